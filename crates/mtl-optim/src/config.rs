//! Serde configuration of an optimizer, as read from a run's TOML file, and
//! the range checks every hyperparameter goes through.

use serde::{Deserialize, Serialize};

use crate::adagrad::AdagradConfig;
use crate::adam::AdamConfig;
use crate::adamax::AdamaxConfig;
use crate::adamw::AdamWConfig;
use crate::error::{OptimError, Result};
use crate::group::ParamGroup;
use crate::optimizer::Optimizer;
use crate::rmsprop::RmsPropConfig;
use crate::sgd::SgdConfig;

/// Which optimizer to build and with what hyperparameters, tagged by `name`.
///
/// Every field has PyTorch's default, so only what differs needs writing.
/// Unknown keys are refused with their name:
///
/// ```
/// use mtl_optim::{OptimizerConfig, ParamGroup};
///
/// #[derive(Debug, serde::Deserialize)]
/// struct Run {
///     optimizer: OptimizerConfig,
/// }
/// let run: Run = toml::from_str(r#"optimizer = { name = "adam", lr = 3e-4, amsgrad = true }"#)?;
/// let mut opt = run.optimizer.build(vec![ParamGroup::new(0..2)])?;
/// assert_eq!((opt.name(), opt.lr()), ("adam", 3e-4));
///
/// let bad = toml::from_str::<Run>(r#"optimizer = { name = "sgd", learning_rate = 0.1 }"#);
/// assert!(bad.unwrap_err().to_string().contains("learning_rate"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// [`Sgd`](crate::Sgd) with momentum, dampening, Nesterov and L2 decay.
    Sgd(SgdConfig),
    /// [`Adam`](crate::Adam) with L2 decay and optional AMSGrad.
    Adam(AdamConfig),
    /// AdamW: [`Adam`](crate::Adam) with decoupled decay.
    AdamW(AdamWConfig),
    /// [`RmsProp`](crate::RmsProp), optionally centered and with momentum.
    RmsProp(RmsPropConfig),
    /// [`Adagrad`](crate::Adagrad).
    Adagrad(AdagradConfig),
    /// [`Adamax`](crate::Adamax).
    Adamax(AdamaxConfig),
}

impl Default for OptimizerConfig {
    /// Adam with PyTorch's defaults.
    fn default() -> Self {
        Self::Adam(AdamConfig::default())
    }
}

impl OptimizerConfig {
    /// The optimizer's name as written in a configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd(_) => "sgd",
            Self::Adam(_) => "adam",
            Self::AdamW(_) => "adamw",
            Self::RmsProp(_) => "rmsprop",
            Self::Adagrad(_) => "adagrad",
            Self::Adamax(_) => "adamax",
        }
    }

    /// The configured learning rate (the base of any schedule).
    pub fn lr(&self) -> f64 {
        match self {
            Self::Sgd(c) => c.lr,
            Self::Adam(c) => c.lr,
            Self::AdamW(c) => c.lr,
            Self::RmsProp(c) => c.lr,
            Self::Adagrad(c) => c.lr,
            Self::Adamax(c) => c.lr,
        }
    }

    /// Checks every hyperparameter; the error names the key and the value.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Sgd(c) => c.validate(),
            Self::Adam(c) => c.validate(),
            Self::AdamW(c) => c.validate(),
            Self::RmsProp(c) => c.validate(),
            Self::Adagrad(c) => c.validate(),
            Self::Adamax(c) => c.validate(),
        }
    }

    /// Validates and builds the optimizer over `groups` (empty: the whole
    /// buffer as one group).
    pub fn build(&self, groups: Vec<ParamGroup>) -> Result<Box<dyn Optimizer>> {
        Ok(match self {
            Self::Sgd(c) => Box::new(c.build(groups)?),
            Self::Adam(c) => Box::new(c.build(groups)?),
            Self::AdamW(c) => Box::new(c.build(groups)?),
            Self::RmsProp(c) => Box::new(c.build(groups)?),
            Self::Adagrad(c) => Box::new(c.build(groups)?),
            Self::Adamax(c) => Box::new(c.build(groups)?),
        })
    }
}

/// `value` must be finite and strictly positive.
pub(crate) fn check_positive(key: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(OptimError::InvalidConfig {
            key,
            value,
            reason: "must be finite and > 0",
        })
    }
}

/// `value` must be finite and at least zero.
pub(crate) fn check_non_negative(key: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::InvalidConfig {
            key,
            value,
            reason: "must be finite and >= 0",
        })
    }
}

/// A decay rate: `0 <= value < 1`.
pub(crate) fn check_beta(key: &'static str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(OptimError::InvalidConfig {
            key,
            value,
            reason: "must be in [0, 1)",
        })
    }
}

/// The hyperparameters of the Adam family (Adam, AdamW, Adamax), checked in
/// this order: `lr > 0`, both decay rates in `[0, 1)` (keys `betas.0` and
/// `betas.1`), `eps > 0`, `weight_decay >= 0`.
pub(crate) fn check_adam_family(
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
) -> Result<()> {
    check_positive("lr", lr)?;
    check_beta("betas.0", betas.0)?;
    check_beta("betas.1", betas.1)?;
    check_positive("eps", eps)?;
    check_non_negative("weight_decay", weight_decay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Run {
        optimizer: OptimizerConfig,
    }

    fn parse(s: &str) -> std::result::Result<OptimizerConfig, String> {
        toml::from_str::<Run>(s)
            .map(|r| r.optimizer)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_name_parses_with_defaults() {
        assert_eq!(
            parse(r#"optimizer = { name = "sgd", lr = 0.1, momentum = 0.9 }"#).unwrap(),
            OptimizerConfig::Sgd(SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..SgdConfig::default()
            })
        );
        assert_eq!(
            parse(r#"optimizer = { name = "adamw" }"#).unwrap(),
            OptimizerConfig::AdamW(AdamWConfig::default())
        );
        assert_eq!(
            parse(r#"optimizer = { name = "adam", betas = [0.5, 0.9] }"#).unwrap(),
            OptimizerConfig::Adam(AdamConfig {
                betas: (0.5, 0.9),
                ..AdamConfig::default()
            })
        );
        for name in ["rmsprop", "adagrad", "adamax"] {
            let cfg = parse(&format!("optimizer = {{ name = \"{name}\" }}")).unwrap();
            assert_eq!(cfg.name(), name);
            cfg.validate().unwrap();
        }
    }

    #[test]
    fn unknown_key_and_unknown_name_are_named() {
        let err = parse(r#"optimizer = { name = "adam", lr = 1e-3, beta1 = 0.9 }"#).unwrap_err();
        assert!(err.contains("beta1"), "{err}");
        let err = parse(r#"optimizer = { name = "lamb" }"#).unwrap_err();
        assert!(err.contains("lamb"), "{err}");
    }

    #[test]
    fn validate_names_key_and_value() {
        let cfg = parse(r#"optimizer = { name = "adam", betas = [0.9, 1.0] }"#).unwrap();
        assert_eq!(
            cfg.validate(),
            Err(OptimError::InvalidConfig {
                key: "betas.1",
                value: 1.0,
                reason: "must be in [0, 1)"
            })
        );
        let cfg = parse(r#"optimizer = { name = "rmsprop", lr = -0.5 }"#).unwrap();
        assert!(matches!(
            cfg.build(Vec::new()),
            Err(OptimError::InvalidConfig {
                key: "lr",
                value: -0.5,
                ..
            })
        ));
    }
}
