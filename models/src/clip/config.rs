//! `config.json` of a Hugging Face CLIP model, mapped onto what our network needs.
//!
//! Every field that changes the network is read; absent fields take transformers' defaults
//! (`CLIPTextConfig`, `CLIPVisionConfig`, `CLIPConfig` in `configuration_clip.py`), so an old or
//! minimal config behaves as it does in transformers. Values the network cannot be built from
//! (zero sizes, hidden sizes not divisible by the head count, unknown activations) are rejected
//! at load with [`EmbedError::Config`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EmbedError;

/// The MLP activation named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, the original OpenAI CLIP activation.
    QuickGelu,
    /// Exact GELU with erf (`nn.GELU()`, transformers' `"gelu"`).
    Gelu,
    /// GELU with the tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    /// `max(x, 0)`.
    Relu,
}

/// The text tower of a CLIP model (`text_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    /// Number of token embeddings.
    pub vocab_size: usize,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads (divides `hidden_size`).
    pub num_attention_heads: usize,
    /// Longest token sequence, start and end tokens included.
    pub max_position_embeddings: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Epsilon of every layer norm of this tower.
    pub layer_norm_eps: f64,
    /// Id of the end token, where the text is pooled. The legacy value 2 means "pool at the
    /// highest id" as in transformers (`argmax(input_ids)`).
    pub eos_token_id: u32,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

/// The vision tower of a CLIP model (`vision_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads (divides `hidden_size`).
    pub num_attention_heads: usize,
    /// Input channels (3 for RGB).
    pub num_channels: usize,
    /// Side of the square input image.
    pub image_size: usize,
    /// Side of a square patch (divides `image_size`).
    pub patch_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Epsilon of every layer norm of this tower.
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipVisionConfig {
    /// Number of patches plus the class token.
    pub fn num_positions(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }
}

/// A whole CLIP model (`config.json` of a `CLIPModel`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// Text tower.
    pub text_config: ClipTextConfig,
    /// Vision tower.
    pub vision_config: ClipVisionConfig,
    /// Size of the shared embedding space (both projections map to it).
    pub projection_dim: usize,
    /// `model_type`; only `clip` (or absent) is accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// Present only in the folders imagelens' own generator writes (`models::tiny`, feature
    /// `testing`): the weights are seeded random numbers, so the vectors carry no meaning.
    #[serde(
        rename = "imagelens_random_weights",
        skip_serializing_if = "Option::is_none"
    )]
    pub random_weights: Option<RandomWeights>,
}

/// The `imagelens_random_weights` entry of a generated model's `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomWeights {
    /// The seed the weights were drawn with.
    pub seed: u64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            text_config: ClipTextConfig::default(),
            vision_config: ClipVisionConfig::default(),
            projection_dim: 512,
            model_type: Some("clip".into()),
            random_weights: None,
        }
    }
}

impl ClipConfig {
    /// `openai/clip-vit-base-patch32`'s shapes (which are also transformers' defaults).
    pub fn vit_base_patch32() -> Self {
        Self::default()
    }

    /// Parses and validates `config.json` text; `path` is only used in error messages.
    ///
    /// # Errors
    /// [`EmbedError::Config`] when the JSON is malformed or describes an impossible network.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, EmbedError> {
        let config: Self = serde_json::from_str(text).map_err(|e| EmbedError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        config.validate().map_err(|reason| EmbedError::Config {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(config)
    }

    /// Reads and validates a `config.json` file.
    ///
    /// # Errors
    /// [`EmbedError::MissingFile`] when absent, [`EmbedError::Config`] when ill-formed.
    pub fn from_file(path: &Path) -> Result<Self, EmbedError> {
        Self::from_json(&crate::clip::read_to_string(path)?, path)
    }

    /// Checks that a network can be built from these numbers.
    ///
    /// # Errors
    /// A description of the first impossible value.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.model_type
            && t != "clip"
        {
            return Err(format!(
                "model_type is {t:?}, only CLIP models (\"clip\") are supported"
            ));
        }
        let t = &self.text_config;
        let v = &self.vision_config;
        let nonzero = [
            ("projection_dim", self.projection_dim),
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.num_channels", v.num_channels),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{name} must not be 0"));
        }
        if !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(format!(
                "text_config.hidden_size {} is not divisible by num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(format!(
                "vision_config.hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "vision_config.image_size {} is not divisible by patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        if t.max_position_embeddings < 2 {
            return Err("text_config.max_position_embeddings must be at least 2".into());
        }
        for (name, eps) in [
            ("text_config", t.layer_norm_eps),
            ("vision_config", v.layer_norm_eps),
        ] {
            if !(eps.is_finite() && eps >= 0.0) {
                return Err(format!(
                    "{name}.layer_norm_eps {eps} is not a valid epsilon"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_take_transformers_defaults() {
        let c = ClipConfig::from_json("{}", Path::new("config.json")).unwrap();
        assert_eq!(c, ClipConfig::vit_base_patch32());
        assert_eq!(c.vision_config.num_positions(), 50);
    }

    #[test]
    fn every_network_field_is_read() {
        let json = r#"{
            "projection_dim": 16,
            "text_config": {"vocab_size": 10, "hidden_size": 8, "intermediate_size": 12,
                "num_hidden_layers": 3, "num_attention_heads": 2, "max_position_embeddings": 9,
                "hidden_act": "gelu", "layer_norm_eps": 1e-6, "eos_token_id": 9},
            "vision_config": {"hidden_size": 12, "intermediate_size": 20, "num_hidden_layers": 1,
                "num_attention_heads": 3, "image_size": 32, "patch_size": 8,
                "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-3}
        }"#;
        let c = ClipConfig::from_json(json, Path::new("config.json")).unwrap();
        assert_eq!(c.projection_dim, 16);
        assert_eq!(c.text_config.hidden_act, Activation::Gelu);
        assert_eq!(c.text_config.layer_norm_eps, 1e-6);
        assert_eq!(c.text_config.eos_token_id, 9);
        assert_eq!(c.text_config.max_position_embeddings, 9);
        assert_eq!(c.vision_config.hidden_act, Activation::GeluNew);
        assert_eq!(c.vision_config.num_positions(), 17);
        assert_eq!(c.vision_config.layer_norm_eps, 1e-3);
    }

    #[test]
    fn impossible_networks_are_config_errors() {
        for json in [
            r#"{"vision_config": {"hidden_size": 10, "num_attention_heads": 3}}"#,
            r#"{"vision_config": {"image_size": 30, "patch_size": 8}}"#,
            r#"{"text_config": {"hidden_act": "swish"}}"#,
            r#"{"projection_dim": 0}"#,
            r#"{"model_type": "siglip"}"#,
            r#"{"projection_dim": "#,
        ] {
            let err = ClipConfig::from_json(json, Path::new("config.json")).unwrap_err();
            assert!(matches!(err, EmbedError::Config { .. }), "{json}: {err}");
        }
    }
}
