//! A refusal: moat will not run this spec, and says which rule and which
//! policy key would allow it.

use std::fmt;

/// Why moat will not create a container. Returned before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Short rule name, e.g. `host-namespace`.
    pub rule: &'static str,
    /// What in the spec triggered it.
    pub detail: String,
    /// The policy key that would allow it, if any may.
    pub key: Option<String>,
}

impl Refusal {
    pub fn new(rule: &'static str, detail: impl Into<String>, key: Option<&str>) -> Self {
        Self {
            rule,
            detail: detail.into(),
            key: key.map(str::to_string),
        }
    }

    pub(crate) fn annotation(name: &str, why: String) -> Self {
        Self::new("annotation", format!("annotation {name}: {why}"), None)
    }

    pub(crate) fn loosening(name: &str, key: &str) -> Self {
        Self {
            rule: "annotation-loosens-policy",
            detail: format!(
                "annotation {name} would loosen the operator policy, and the operator has not listed {key:?} in annotations.overridable"
            ),
            key: Some(key.to_string()),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by moat rule {}: {}", self.rule, self.detail)?;
        match &self.key {
            Some(key) if self.rule == "annotation-loosens-policy" => write!(
                f,
                " (the operator may allow it by adding {key:?} to annotations.overridable in the policy)"
            ),
            Some(key) => write!(f, " (the operator may allow it with policy key {key})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Refusal {}
