//! The registry: build a balancer from its name and a typed configuration,
//! and list every method with its parameters and defaults.
//!
//! A configuration is a serde type, so in a TOML run file
//! `balancer = { name = "gradnorm", alpha = 1.5 }` selects GradNorm with
//! `alpha = 1.5` and every other parameter at its default. An unknown name is
//! an [`Error::UnknownBalancer`] listing the valid names; an unknown parameter
//! is an [`Error::Config`] listing the valid parameters.
//!
//! Adding a method: implement [`MethodConfig`] for its configuration type and
//! add one line `Variant(Config)` to the `registry!` table below; that line
//! is the enum variant, the `name` and `build` arms and the listing entry.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    AlignedMtlConfig, AutoLambdaConfig, Balancer, CagradConfig, ConFigConfig, CrMogmConfig,
    DbMtlConfig, DualProjConfig, DwaConfig, EqualConfig, ExcessMtlConfig, FairGradConfig,
    FamoConfig, FixedConfig, GlsConfig, GradDropConfig, GradNormConfig, GradVacConfig,
    GradientSource, ImtlConfig, KrumConfig, MgdaConfig, MgdaUbConfig, MoCoConfig, MoDoConfig,
    NashMtlConfig, PcGradConfig, PcdConfig, RlwConfig, SdmGradConfig, StchConfig,
    TrimmedMeanConfig, UncertaintyConfig, UpGradConfig,
};
use crate::error::{Error, Result};

/// The configuration type of one method: its parameters with their defaults,
/// and how to build the balancer from them.
pub trait MethodConfig:
    Serialize + DeserializeOwned + Default + Clone + fmt::Debug + PartialEq
{
    /// The registry name (the `name` key of a configuration).
    const NAME: &'static str;
    /// One line saying what the method does, with its paper.
    const SUMMARY: &'static str;
    /// Which gradient rows the method needs.
    const NEEDS: GradientSource;
    /// Every parameter (serialised field name) with a one-line description.
    const PARAMS: &'static [(&'static str, &'static str)];

    /// Checks the parameters against `num_tasks` and builds the balancer;
    /// `seed` seeds any randomness the method uses.
    ///
    /// # Errors
    /// [`Error::NoTasks`], [`Error::InvalidParameter`] or [`Error::CountMismatch`].
    fn build(&self, num_tasks: usize, seed: u64) -> Result<Box<dyn Balancer>>;
}

/// The one table of methods: each line `Variant(ConfigType)` adds the
/// [`BalancerConfig`] variant (serde name: the variant in kebab-case, which
/// must equal the config's `NAME`), its arm in [`BalancerConfig::name`] and
/// [`BalancerConfig::build`], and its line in [`methods`], in table order.
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($config:ty),)*) => {
        /// A balancer configuration: the method's name plus its typed parameters.
        ///
        /// Serialised with the tag `name`, e.g. `{ "name": "dwa", "temperature": 2.0 }`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "name", rename_all = "kebab-case")]
        pub enum BalancerConfig {
            $($(#[$doc])* $variant($config),)*
        }

        impl BalancerConfig {
            /// The registry name of the configured method.
            pub fn name(&self) -> &'static str {
                match self {
                    $(BalancerConfig::$variant(_) => <$config as MethodConfig>::NAME,)*
                }
            }

            /// Builds the balancer for `num_tasks` tasks; `seed` seeds its randomness.
            ///
            /// # Errors
            /// Invalid parameters, or parameters that disagree with `num_tasks`.
            pub fn build(&self, num_tasks: usize, seed: u64) -> Result<Box<dyn Balancer>> {
                match self {
                    $(BalancerConfig::$variant(c) => c.build(num_tasks, seed),)*
                }
            }
        }

        /// Every registered method with its parameters and their defaults.
        pub fn methods() -> Vec<MethodInfo> {
            vec![$(info::<$config>(),)*]
        }

        /// Whether every method's serialised parameters are exactly its
        /// documented `PARAMS`; the first mismatching name otherwise.
        #[cfg(test)]
        fn undocumented_parameters() -> Option<&'static str> {
            [$(documents_its_parameters::<$config>(),)*]
                .into_iter()
                .flatten()
                .next()
        }
    };
}

registry! {
    /// Equal weighting, `1/T` each.
    Equal(EqualConfig),
    /// Fixed user weights.
    Fixed(FixedConfig),
    /// Uncertainty weighting (Kendall et al. 2018).
    Uncertainty(UncertaintyConfig),
    /// GradNorm (Chen et al. 2018).
    Gradnorm(GradNormConfig),
    /// Dynamic Weight Average (Liu et al. 2019).
    Dwa(DwaConfig),
    /// Random Loss Weighting (Lin et al. 2022).
    Rlw(RlwConfig),
    /// FAMO (Liu et al. 2023).
    Famo(FamoConfig),
    /// DB-MTL, log-losses and EMA gradients rescaled to the largest norm (Lin et al. 2023).
    DbMtl(DbMtlConfig),
    /// MGDA, min-norm point of the convex hull (Sener & Koltun 2018).
    Mgda(MgdaConfig),
    /// MGDA-UB, MGDA on shared-representation gradients (Sener & Koltun 2018).
    MgdaUb(MgdaUbConfig),
    /// PCGrad, gradient surgery (Yu et al. 2020).
    Pcgrad(PcGradConfig),
    /// GradDrop, gradient sign dropout (Chen et al. 2020).
    Graddrop(GradDropConfig),
    /// GradVac, gradient vaccine (Wang et al. 2021).
    Gradvac(GradVacConfig),
    /// CAGrad, conflict-averse gradient descent (Liu et al. 2021).
    Cagrad(CagradConfig),
    /// IMTL, impartial multi-task learning (Liu et al. 2021).
    Imtl(ImtlConfig),
    /// Nash-MTL, bargaining solution (Navon et al. 2022).
    NashMtl(NashMtlConfig),
    /// Aligned-MTL, independent component alignment (Senushkin et al. 2023).
    AlignedMtl(AlignedMtlConfig),
    /// UPGrad, projection onto the dual cone (Quinton & Rey 2024).
    Upgrad(UpGradConfig),
    /// ConFIG, conflict-free inverse gradients (Liu et al. 2024).
    Config(ConFigConfig),
    /// GLS, geometric mean of the losses (Chennupati et al. 2019).
    Gls(GlsConfig),
    /// STCH, smooth Tchebycheff scalarisation (Lin et al. 2024).
    Stch(StchConfig),
    /// MoCo, tracked gradients with a corrected min-norm weighting (Fernando et al. 2023).
    Moco(MoCoConfig),
    /// ExcessMTL, weights driven by excess-risk estimates (He et al. 2024).
    ExcessMtl(ExcessMtlConfig),
    /// FairGrad, α-fair allocation of the update (Ban & Ji 2024).
    Fairgrad(FairGradConfig),
    /// MoDo, double-sampling stochastic MGDA (Chen et al. 2024).
    Modo(MoDoConfig),
    /// SDMGrad, direction-oriented stochastic MGDA (Xiao et al. 2023).
    Sdmgrad(SdmGradConfig),
    /// DualProj, the mean projected onto the dual cone (Lopez-Paz & Ranzato 2017).
    Dualproj(DualProjConfig),
    /// Krum, Byzantine-robust selection (Blanchard et al. 2017).
    Krum(KrumConfig),
    /// Coordinate-wise trimmed mean (Yin et al. 2018).
    TrimmedMean(TrimmedMeanConfig),
    /// CR-MOGM, moving average of an inner method's weights (Zhou et al. 2022).
    CrMogm(CrMogmConfig),
    /// PCD, priority-constrained descent (Varam et al. 2026).
    Pcd(PcdConfig),
    /// Auto-Lambda, weights learned by a validation look-ahead (Liu et al. 2022).
    AutoLambda(AutoLambdaConfig),
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig::Equal(EqualConfig::default())
    }
}

impl BalancerConfig {
    /// The names of every registered method, in listing order.
    pub fn names() -> Vec<&'static str> {
        methods().into_iter().map(|m| m.name).collect()
    }

    /// The configuration of `name` with every parameter at its default.
    ///
    /// # Errors
    /// [`Error::UnknownBalancer`] listing the valid names.
    pub fn default_for(name: &str) -> Result<Self> {
        Self::from_json(&serde_json::json!({ "name": name }))
    }

    /// Parses a configuration from a JSON object with a `name` key.
    ///
    /// # Errors
    /// [`Error::UnknownBalancer`] listing the valid names for a missing or
    /// unknown name; [`Error::Config`] listing the valid parameters for an
    /// unknown parameter or a value of the wrong type.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let names = Self::names();
        let name = value.get("name").and_then(|n| n.as_str()).unwrap_or("");
        if !names.contains(&name) {
            return Err(Error::UnknownBalancer {
                name: name.to_owned(),
                valid: names.join(", "),
            });
        }
        serde_json::from_value(value.clone()).map_err(|e| Error::Config(format!("`{name}`: {e}")))
    }
}

impl FromStr for BalancerConfig {
    type Err = Error;

    /// A bare method name with default parameters, e.g. `"dwa".parse()`.
    fn from_str(name: &str) -> Result<Self> {
        Self::default_for(name)
    }
}

/// One parameter of a method, for listings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamInfo {
    /// The parameter's key in a configuration.
    pub name: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// Its default value.
    pub default: serde_json::Value,
}

/// One registered method, for listings (`mtl balancers` prints these).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodInfo {
    /// The registry name.
    pub name: &'static str,
    /// One line saying what it does.
    pub summary: &'static str,
    /// Which gradient rows it needs each step.
    pub needs: GradientSource,
    /// Its parameters with defaults.
    pub params: Vec<ParamInfo>,
}

fn info<C: MethodConfig>() -> MethodInfo {
    let defaults = serde_json::to_value(C::default()).expect("configurations serialise to JSON");
    let params = C::PARAMS
        .iter()
        .map(|&(name, doc)| ParamInfo {
            name,
            doc,
            default: defaults
                .get(name)
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        })
        .collect();
    MethodInfo {
        name: C::NAME,
        summary: C::SUMMARY,
        needs: C::NEEDS,
        params,
    }
}

/// `Some(name)` when `C`'s serialised parameters differ from its `PARAMS`.
#[cfg(test)]
fn documents_its_parameters<C: MethodConfig>() -> Option<&'static str> {
    let Ok(defaults) = serde_json::to_value(C::default()) else {
        return Some(C::NAME);
    };
    let mut serialised: Vec<&str> = defaults
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    serialised.sort_unstable();
    let mut documented: Vec<&str> = C::PARAMS.iter().map(|(n, _)| *n).collect();
    documented.sort_unstable();
    (serialised != documented).then_some(C::NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_serialised_parameter_is_documented_and_vice_versa() {
        assert_eq!(undocumented_parameters(), None);
    }

    #[test]
    fn listing_and_enum_agree_on_names() {
        for m in methods() {
            let cfg = BalancerConfig::default_for(m.name).unwrap();
            assert_eq!(cfg.name(), m.name);
        }
        let mut names = BalancerConfig::names();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate method names");
    }

    #[test]
    fn listing_covers_every_enum_variant() {
        // serde's error for an unknown tag enumerates the enum's variants.
        let err = serde_json::from_value::<BalancerConfig>(serde_json::json!({ "name": "?" }))
            .unwrap_err()
            .to_string();
        let listed = err
            .split("expected one of ")
            .nth(1)
            .expect("serde lists the variants");
        let mut variants: Vec<&str> = listed
            .split(", ")
            .map(|v| v.trim_matches(|c: char| c == '`' || !c.is_ascii_graphic()))
            .map(|v| v.split('`').next().unwrap_or(v))
            .collect();
        variants.sort_unstable();
        let mut names = BalancerConfig::names();
        names.sort_unstable();
        assert_eq!(variants, names);
    }

    #[test]
    fn unknown_name_lists_valid_names() {
        let err = BalancerConfig::default_for("gradnrom").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("gradnrom"), "{msg}");
        for name in BalancerConfig::names() {
            assert!(msg.contains(name), "{msg} lacks {name}");
        }
        let missing = BalancerConfig::from_json(&serde_json::json!({ "alpha": 1.0 })).unwrap_err();
        assert!(matches!(missing, Error::UnknownBalancer { .. }));
    }

    #[test]
    fn unknown_parameter_lists_valid_parameters() {
        let err =
            BalancerConfig::from_json(&serde_json::json!({ "name": "fixed", "weigths": [1.0] }))
                .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Config(_)));
        assert!(msg.contains("weigths"), "{msg}");
        for (p, _) in FixedConfig::PARAMS {
            assert!(msg.contains(p), "{msg} lacks {p}");
        }
    }

    #[test]
    fn toml_inline_table_selects_method_and_sets_parameters() {
        #[derive(Deserialize)]
        struct Run {
            balancer: BalancerConfig,
        }
        let run: Run =
            toml::from_str(r#"balancer = { name = "fixed", weights = [1.0, 2.0] }"#).unwrap();
        let expected = FixedConfig {
            weights: vec![1.0, 2.0],
        };
        assert_eq!(run.balancer, BalancerConfig::Fixed(expected));
        let run: Run = toml::from_str(r#"balancer = { name = "equal" }"#).unwrap();
        assert_eq!(run.balancer, BalancerConfig::Equal(EqualConfig::default()));
    }

    #[test]
    fn gradnorm_from_toml_and_its_unknown_parameter() {
        #[derive(Deserialize)]
        struct Run {
            balancer: BalancerConfig,
        }
        let run: Run = toml::from_str(r#"balancer = { name = "gradnorm", alpha = 0.5 }"#).unwrap();
        let expected = GradNormConfig {
            alpha: 0.5,
            ..GradNormConfig::default()
        };
        assert_eq!(run.balancer, BalancerConfig::Gradnorm(expected));
        let err =
            BalancerConfig::from_json(&serde_json::json!({ "name": "gradnorm", "alhpa": 1.0 }))
                .unwrap_err()
                .to_string();
        for (p, _) in GradNormConfig::PARAMS {
            assert!(err.contains(p), "{err} lacks {p}");
        }
    }

    #[test]
    fn configuration_round_trips_through_json() {
        for name in BalancerConfig::names() {
            let cfg = BalancerConfig::default_for(name).unwrap();
            let json = serde_json::to_value(&cfg).unwrap();
            assert_eq!(json["name"], name);
            assert_eq!(BalancerConfig::from_json(&json).unwrap(), cfg);
        }
    }

    #[test]
    fn built_balancer_reports_its_name_and_needs() {
        for m in methods() {
            let cfg = BalancerConfig::default_for(m.name).unwrap();
            // Fixed weights need one weight per task; every other method builds from defaults.
            let cfg = match cfg {
                BalancerConfig::Fixed(_) => BalancerConfig::Fixed(FixedConfig {
                    weights: vec![1.0, 1.0, 1.0],
                }),
                other => other,
            };
            let b = cfg.build(3, 7).unwrap();
            assert_eq!(b.name(), m.name);
            assert_eq!(b.needs(), m.needs);
            assert_eq!(b.num_tasks(), 3);
        }
    }

    #[test]
    fn zero_tasks_is_an_error_for_every_method() {
        for name in BalancerConfig::names() {
            let err = BalancerConfig::default_for(name).unwrap().build(0, 0).err();
            assert!(err.is_some(), "{name} built with zero tasks");
        }
    }
}
