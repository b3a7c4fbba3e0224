//! The `model` field every LLM request carries, checked the same way on every API the
//! gateway speaks (OpenAI's endpoints and Anthropic's Messages API).

use crate::error::GatewayError;

/// Longest accepted model name.
pub const MAX_MODEL_LEN: usize = 256;

/// A `model` value the gateway can route: not blank, at most [`MAX_MODEL_LEN`] bytes.
pub fn check_model(m: &str) -> Result<(), GatewayError> {
    if m.trim().is_empty() {
        return Err(GatewayError::invalid(
            "`model` must not be empty",
            Some("model"),
        ));
    }
    if m.len() > MAX_MODEL_LEN {
        return Err(GatewayError::invalid(
            format!("`model` is longer than {MAX_MODEL_LEN} bytes"),
            Some("model"),
        ));
    }
    Ok(())
}
