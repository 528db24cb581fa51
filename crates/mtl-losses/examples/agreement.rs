//! Runs balancers on the gradient matrices of a JSON file and prints their
//! directions, for the comparison with TorchJD in
//! `crates/mtl-losses/tools/torchjd_agreement.py`.
//!
//! Input: `{"cases": [{"name", "tasks", "cols", "steps": [{"rows", "losses",
//! "rows2"?}]}], "methods": [{"label", "config"}]}` with `rows` the `T × P`
//! matrix row-major and `rows2` the second mini-batch's rows (MoDo,
//! SDMGrad). Every method is built fresh (seed 0) for every case and runs
//! its steps in order. Output: `{label: {case: {"directions": [[…] per
//! step], "weights": [[…] per step]}}}`, or `{"error": "…"}` for a case a
//! method refuses.
//!
//! Usage: `cargo run -p mtl-losses --example agreement -- cases.json`.

use std::error::Error;

use mtl_losses::balance::{BalanceInput, BalancerConfig, GradRows, SecondBatch};
use serde_json::{json, Map, Value};

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect()
        })
        .unwrap_or_default()
}

fn run_case(config: &Value, case: &Value) -> Result<Value, Box<dyn Error>> {
    let tasks = case["tasks"].as_u64().ok_or("tasks")? as usize;
    let cols = case["cols"].as_u64().ok_or("cols")? as usize;
    let mut balancer = BalancerConfig::from_json(config)?.build(tasks, 0)?;
    let (mut directions, mut weights) = (Vec::new(), Vec::new());
    for step in case["steps"].as_array().ok_or("steps")? {
        let rows = floats(&step["rows"]);
        let losses = floats(&step["losses"]);
        let rows2 = floats(&step["rows2"]);
        let grads = GradRows::new(&rows, tasks, cols)?;
        let mut input = BalanceInput::from_losses(&losses).with_grads(grads);
        if balancer.needs_second_batch() {
            input = input.with_second(SecondBatch {
                losses: &losses,
                grads: GradRows::new(&rows2, tasks, cols)?,
            });
        }
        let out = balancer.balance(&input)?;
        directions.push(out.shared_direction(&grads)?);
        weights.push(out.weights().to_vec());
    }
    Ok(json!({ "directions": directions, "weights": weights }))
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: agreement CASES.json")?;
    let input: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut output = Map::new();
    for method in input["methods"].as_array().ok_or("methods")? {
        let label = method["label"].as_str().ok_or("label")?.to_owned();
        let mut per_case = Map::new();
        for case in input["cases"].as_array().ok_or("cases")? {
            let name = case["name"].as_str().ok_or("name")?.to_owned();
            let result = run_case(&method["config"], case)
                .unwrap_or_else(|e| json!({ "error": e.to_string() }));
            per_case.insert(name, result);
        }
        output.insert(label, Value::Object(per_case));
    }
    println!("{}", Value::Object(output));
    Ok(())
}
