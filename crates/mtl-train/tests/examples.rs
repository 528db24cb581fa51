//! Runs every example of the crate: each one's `main` checks the quality its
//! header states and returns an error when it is not reached.

// Formatted as an example (with `examples/rustfmt.toml`), not from here.
#[rustfmt::skip]
#[path = "../examples/custom_model.rs"]
mod custom_model;

#[test]
fn custom_model_reaches_its_stated_quality() {
    if let Err(e) = custom_model::main() {
        panic!("custom_model: {e}");
    }
}
