//! OpenAI request bodies and their validation. Everything a client can get wrong is
//! rejected here with a 400 naming the parameter, before the engine sees the request.

use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;

/// `stop`: one string or a list of up to 4.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling and length parameters shared by chat and completions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    pub max_tokens: Option<u64>,
    /// Chat's newer name for `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Option<Stop>,
    pub seed: Option<u64>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub n: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    /// vLLM's partial-message continuation: the final (assistant) message is continued
    /// instead of answered; needs `add_generation_prompt: false`.
    #[serde(default)]
    pub continue_final_message: bool,
    #[serde(default)]
    pub add_generation_prompt: Option<bool>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Value,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub echo: bool,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// Validated sampling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub max_tokens: Option<usize>,
    /// `None` = greedy (temperature 0).
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
}

impl Sampling {
    /// Validate against the model's context length.
    pub fn validate(&self, max_seq_len: usize) -> Result<Params, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad("only n = 1 is supported", Some("n")));
        }
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if let Some(m) = max_tokens {
            if m == 0 || m as usize > max_seq_len {
                return Err(ApiError::bad(
                    format!("`max_tokens` must be between 1 and {max_seq_len}"),
                    Some("max_tokens"),
                ));
            }
        }
        let temperature = match self.temperature {
            Some(t) if !(0.0..=2.0).contains(&t) => {
                return Err(ApiError::bad(
                    "`temperature` must be between 0 and 2",
                    Some("temperature"),
                ))
            }
            Some(t) if t < 1e-5 => None,
            Some(t) => Some(t),
            None => Some(1.0), // OpenAI's default
        };
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ApiError::bad("`top_p` must be in (0, 1]", Some("top_p")));
            }
        }
        for (v, name) in [
            (self.frequency_penalty, "frequency_penalty"),
            (self.presence_penalty, "presence_penalty"),
        ] {
            if v.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
                return Err(ApiError::bad(
                    format!("`{name}` must be between -2 and 2"),
                    None,
                ));
            }
        }
        let stop = match &self.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > 4 || stop.iter().any(|s| s.is_empty()) {
            return Err(ApiError::bad(
                "`stop` takes up to 4 non-empty strings",
                Some("stop"),
            ));
        }
        Ok(Params {
            max_tokens: max_tokens.map(|m| m as usize),
            temperature,
            top_p: self.top_p,
            stop,
            seed: self.seed,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
        })
    }
}

/// The text of a message's `content`: a string, or text parts `[{"type":"text","text":…}]`.
pub fn content_text(content: &Option<Value>, index: usize) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    _ => {
                        return Err(ApiError::bad(
                            format!("messages[{index}].content: only text parts are supported"),
                            Some("messages"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(ApiError::bad(
            format!("messages[{index}].content must be a string or text parts"),
            Some("messages"),
        )),
    }
}

/// Validated chat messages as (role, text).
pub fn chat_messages(messages: &[ChatMessage]) -> Result<Vec<(String, String)>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad(
            "`messages` must contain at least one message",
            Some("messages"),
        ));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| match m.role.as_str() {
            "system" | "user" | "assistant" | "tool" | "developer" => {
                let role = if m.role == "developer" {
                    "system".to_string()
                } else {
                    m.role.clone()
                };
                Ok((role, content_text(&m.content, i)?))
            }
            other => Err(ApiError::bad(
                format!("messages[{i}].role `{other}` is not a valid role"),
                Some("messages"),
            )),
        })
        .collect()
}

/// The prompt of a chat request: its messages, or (`continue_final_message`) the messages
/// before the final assistant message and that message's text, to be continued. Refused like
/// vLLM: both flags set (`add_generation_prompt` defaults to true), or a final message that
/// is not the assistant's.
pub fn chat_prompt(req: &ChatRequest) -> Result<crate::generate::Prompt, ApiError> {
    use crate::generate::Prompt;
    let mut messages = chat_messages(&req.messages)?;
    if !req.continue_final_message {
        return Ok(Prompt::Chat(messages));
    }
    if req.add_generation_prompt.unwrap_or(true) {
        return Err(ApiError::bad(
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
            Some("continue_final_message"),
        ));
    }
    match messages.pop() {
        Some((role, partial)) if role == "assistant" && !messages.is_empty() => {
            Ok(Prompt::Continue { messages, partial })
        }
        _ => Err(ApiError::bad(
            "`continue_final_message` needs a final assistant message after at least one other message",
            Some("messages"),
        )),
    }
}

/// A completion prompt: a string, or a list holding exactly one string.
pub fn prompt_text(prompt: &Value) -> Result<String, ApiError> {
    match prompt {
        Value::String(s) => Ok(s.clone()),
        Value::Array(v) if v.len() == 1 && v[0].is_string() => {
            Ok(v[0].as_str().unwrap_or_default().to_string())
        }
        Value::Array(_) => Err(ApiError::bad(
            "`prompt` must be a string or a list with one string",
            Some("prompt"),
        )),
        _ => Err(ApiError::bad("`prompt` must be a string", Some("prompt"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sampling(v: Value) -> Sampling {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn validates_sampling() {
        let p = sampling(json!({"max_tokens": 5, "temperature": 0, "stop": "x"}))
            .validate(100)
            .unwrap();
        assert_eq!(p.max_tokens, Some(5));
        assert_eq!(p.temperature, None, "temperature 0 is greedy");
        assert_eq!(p.stop, vec!["x"]);
        assert_eq!(
            sampling(json!({})).validate(100).unwrap().temperature,
            Some(1.0)
        );
        for bad in [
            json!({"max_tokens": 0}),
            json!({"max_tokens": 101}),
            json!({"temperature": 3}),
            json!({"top_p": 0}),
            json!({"n": 2}),
            json!({"stop": ["a","b","c","d","e"]}),
            json!({"presence_penalty": 9}),
        ] {
            assert!(sampling(bad.clone()).validate(100).is_err(), "{bad}");
        }
        assert_eq!(
            sampling(json!({"max_completion_tokens": 7}))
                .validate(100)
                .unwrap()
                .max_tokens,
            Some(7)
        );
    }

    #[test]
    fn continue_final_message_like_vllm() {
        use crate::generate::Prompt;
        let req = |extra: Value| -> ChatRequest {
            let mut v = json!({"messages": [{"role": "user", "content": "q"},
                {"role": "assistant", "content": "Once upon"}]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(v).unwrap()
        };
        assert!(matches!(chat_prompt(&req(json!({}))), Ok(Prompt::Chat(m)) if m.len() == 2));
        let ok = json!({"continue_final_message": true, "add_generation_prompt": false});
        match chat_prompt(&req(ok)) {
            Ok(Prompt::Continue { messages, partial }) => {
                assert_eq!(messages, vec![("user".to_string(), "q".to_string())]);
                assert_eq!(partial, "Once upon");
            }
            _ => panic!("a continuation"),
        }
        assert!(chat_prompt(&req(json!({"continue_final_message": true}))).is_err());
        let user_last: ChatRequest = serde_json::from_value(json!({"messages": [
            {"role": "user", "content": "q"}], "continue_final_message": true,
            "add_generation_prompt": false}))
        .unwrap();
        assert!(chat_prompt(&user_last).is_err());
    }

    #[test]
    fn reads_messages_and_prompts() {
        let msgs: Vec<ChatMessage> = serde_json::from_value(json!([
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}
        ]))
        .unwrap();
        let m = chat_messages(&msgs).unwrap();
        assert_eq!(m[1], ("user".to_string(), "hi there".to_string()));
        assert!(chat_messages(&[]).is_err());
        let bad: Vec<ChatMessage> =
            serde_json::from_value(json!([{"role":"wizard","content":"x"}])).unwrap();
        assert!(chat_messages(&bad).is_err());
        let img: Vec<ChatMessage> =
            serde_json::from_value(json!([{"role":"user","content":[{"type":"image_url"}]}]))
                .unwrap();
        assert!(chat_messages(&img).is_err());
        assert_eq!(prompt_text(&json!(["once"])).unwrap(), "once");
        assert!(prompt_text(&json!(5)).is_err());
        assert!(prompt_text(&json!(["a", "b"])).is_err());
    }
}
