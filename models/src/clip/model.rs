//! The CLIP network (text and vision transformers plus projections) on candle tensors.
//!
//! Adapted from candle-transformers 0.11.1 `models/clip/{text_model,vision_model}.rs`
//! (Apache-2.0/MIT), itself a port of transformers' `modeling_clip.py`. Changes:
//! - activation and layer-norm epsilon come from `config.json` (candle hard-codes quick_gelu
//!   for text and 1e-5 everywhere);
//! - text is pooled where transformers pools: at the first `eos_token_id`, or at
//!   `argmax(input_ids)` for legacy configs with `eos_token_id == 2`;
//! - speed: q, k and v projections fused into one matmul with the attention scale folded into
//!   the q weights; one `contiguous` copy per attention instead of three; the patch embedding is
//!   a reshape plus matmul instead of a convolution; the last encoder layer computes only the
//!   pooled token (class token or end token), whose output is all CLIP uses;
//! - tensors are looked up by name with their expected shapes so a bad weights file gives
//!   [`EmbedError::MissingTensor`] / [`EmbedError::TensorShape`], never a panic.
//!
//! `tests/upstream.rs` runs candle-transformers' CLIP beside this one on the same weights.

use candle::{DType, Device, Tensor};
use candle_nn::{LayerNorm, Module};

use super::config::{Activation, ClipConfig, ClipTextConfig, ClipVisionConfig};
use super::layers::{Layout, Linear, Weights, layer_norm};
use crate::EmbedError;

/// Shapes shared by both towers' encoders.
#[derive(Debug, Clone, Copy)]
struct EncoderShape {
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    act: Activation,
    eps: f64,
    layout: Layout,
}

/// The projections of one attention block. The last layer only needs q for the pooled token, so
/// it keeps q and kv apart; the others use one fused qkv matmul.
#[derive(Debug, Clone)]
enum Projections {
    Fused(Linear),
    Split { q: Linear, kv: Linear },
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    ln1: LayerNorm,
    proj: Projections,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    act: Activation,
}

impl EncoderLayer {
    fn load(ws: &Weights, prefix: &str, s: EncoderShape, last: bool) -> Result<Self, EmbedError> {
        let d = s.hidden;
        let attn = format!("{prefix}.self_attn");
        let get = |name: &str| -> Result<(Tensor, Tensor), EmbedError> {
            Ok((
                ws.get(&format!("{attn}.{name}.weight"), &[d, d])?,
                ws.get(&format!("{attn}.{name}.bias"), &[d])?,
            ))
        };
        let (qw, qb) = get("q_proj")?;
        let (kw, kb) = get("k_proj")?;
        let (vw, vb) = get("v_proj")?;
        // transformers scales q @ k^T by head_dim^-0.5; folding it into q's weights is exact up
        // to rounding and saves a pass over the scores.
        let scale = ((d / s.heads) as f64).powf(-0.5);
        let (qw, qb) = ((qw * scale)?, (qb * scale)?);
        let proj = if last {
            Projections::Split {
                q: Linear::new(qw, Some(qb), s.layout)?,
                kv: Linear::new(
                    Tensor::cat(&[kw, vw], 0)?,
                    Some(Tensor::cat(&[kb, vb], 0)?),
                    s.layout,
                )?,
            }
        } else {
            Projections::Fused(Linear::new(
                Tensor::cat(&[qw, kw, vw], 0)?,
                Some(Tensor::cat(&[qb, kb, vb], 0)?),
                s.layout,
            )?)
        };
        Ok(Self {
            ln1: layer_norm(ws, &format!("{prefix}.layer_norm1"), d, s.eps)?,
            proj,
            out: Linear::load(ws, &format!("{attn}.out_proj"), d, d, true, s.layout)?,
            ln2: layer_norm(ws, &format!("{prefix}.layer_norm2"), d, s.eps)?,
            fc1: Linear::load(
                ws,
                &format!("{prefix}.mlp.fc1"),
                d,
                s.intermediate,
                true,
                s.layout,
            )?,
            fc2: Linear::load(
                ws,
                &format!("{prefix}.mlp.fc2"),
                s.intermediate,
                d,
                true,
                s.layout,
            )?,
            heads: s.heads,
            act: s.act,
        })
    }

    /// Attention of `q` `(b, h, sq, dh)` over `k`, `v` `(b, h, s, dh)`; returns `(b * sq, d)`.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle::Result<Tensor> {
        let (b, h, sq, dh) = q.dims4()?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        // On the CPU every precision computes in f32 (`Precision::compute_dtype`); on a GPU
        // candle's softmax kernel sums in f32 whatever the input's type.
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(v)?; // (b, h, sq, dh)
        let ctx = if sq == 1 {
            ctx.reshape((b, h * dh))?
        } else {
            ctx.transpose(1, 2)?
                .contiguous()?
                .reshape((b * sq, h * dh))?
        };
        self.out.forward(&ctx)
    }

    fn mlp_residual(&self, x: &Tensor) -> candle::Result<Tensor> {
        let y = self.ln2.forward(x)?;
        let y = self.fc1.forward_act(&y, Some(self.act))?;
        let y = self.fc2.forward(&y)?;
        x + y
    }

    /// Full layer on `x` `(b, s, d)` with an optional additive mask `(s, s)`.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle::Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        let (h, dh) = (self.heads, d / self.heads);
        let Projections::Fused(qkv) = &self.proj else {
            candle::bail!("full forward through the pooled (last) layer")
        };
        let x2 = x.reshape((b * s, d))?;
        let qkv = qkv.forward(&self.ln1.forward(&x2)?)?;
        // (b, s, 3, h, dh) -> (3, b, h, s, dh): one copy gives contiguous q, k and v.
        let qkv = qkv
            .reshape((b, s, 3, h, dh))?
            .permute([2, 0, 3, 1, 4])?
            .contiguous()?;
        let ctx = self.attend(&qkv.get(0)?, &qkv.get(1)?, &qkv.get(2)?, mask)?;
        let x2 = (x2 + ctx)?;
        self.mlp_residual(&x2)?.reshape((b, s, d))
    }

    /// The layer's output at one position per sequence only: `x` `(b, s, d)`, `pool[i]` the
    /// position kept for sequence `i`, `causal` whether position `p` sees only `..=p`.
    /// Returns `(b, d)`.
    fn forward_pooled(&self, x: &Tensor, pool: &[usize], causal: bool) -> candle::Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        let (h, dh) = (self.heads, d / self.heads);
        let Projections::Split { q, kv } = &self.proj else {
            candle::bail!("pooled forward through a fused layer")
        };
        let x2 = x.reshape((b * s, d))?;
        let normed = self.ln1.forward(&x2)?;
        let kv = kv.forward(&normed)?;
        let kv = kv
            .reshape((b, s, 2, h, dh))?
            .permute([2, 0, 3, 1, 4])?
            .contiguous()?;
        let rows: Vec<u32> = pool
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * s + p) as u32)
            .collect();
        let rows = Tensor::from_vec(rows, b, x.device())?;
        let x_pooled = x2.index_select(&rows, 0)?;
        let q = q
            .forward(&normed.index_select(&rows, 0)?)?
            .reshape((b, h, 1, dh))?;
        let mask = if causal && pool.iter().any(|&p| p + 1 < s) {
            let m: Vec<f32> = pool
                .iter()
                .flat_map(|&p| (0..s).map(move |j| if j > p { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Some(Tensor::from_vec(m, (b, 1, 1, s), x.device())?.to_dtype(x.dtype())?)
        } else {
            None
        };
        let ctx = self.attend(&q, &kv.get(0)?, &kv.get(1)?, mask.as_ref())?;
        self.mlp_residual(&(x_pooled + ctx)?)
    }
}

#[derive(Debug, Clone)]
struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    fn load(ws: &Weights, prefix: &str, s: EncoderShape) -> Result<Self, EmbedError> {
        let layers = (0..s.layers)
            .map(|i| EncoderLayer::load(ws, &format!("{prefix}.layers.{i}"), s, i + 1 == s.layers))
            .collect::<Result<_, _>>()?;
        Ok(Self { layers })
    }

    /// Runs every layer and returns the hidden state at `pool[i]` of each sequence, `(b, d)`.
    fn forward_pooled(
        &self,
        x: &Tensor,
        pool: &[usize],
        mask: Option<&Tensor>,
    ) -> candle::Result<Tensor> {
        let Some((last, rest)) = self.layers.split_last() else {
            let (b, s, d) = x.dims3()?;
            let rows: Vec<u32> = pool
                .iter()
                .enumerate()
                .map(|(i, &p)| (i * s + p) as u32)
                .collect();
            let rows = Tensor::from_vec(rows, b, x.device())?;
            return x.reshape((b * s, d))?.index_select(&rows, 0);
        };
        let mut x = x.clone();
        for layer in rest {
            x = layer.forward(&x, mask)?;
        }
        last.forward_pooled(&x, pool, mask.is_some())
    }
}

/// The text tower plus its projection.
#[derive(Debug, Clone)]
pub(crate) struct TextModel {
    token_embedding: Tensor,
    position_embedding: Tensor,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    projection: Linear,
    max_positions: usize,
    vocab_size: usize,
    eos_token_id: u32,
}

impl TextModel {
    fn load(ws: &Weights, c: &ClipTextConfig, projection_dim: usize) -> Result<Self, EmbedError> {
        let d = c.hidden_size;
        let shape = EncoderShape {
            hidden: d,
            intermediate: c.intermediate_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            act: c.hidden_act,
            eps: c.layer_norm_eps,
            layout: Layout::View {
                small_rows: ws.value_dtype(),
            },
        };
        Ok(Self {
            token_embedding: ws.get(
                "text_model.embeddings.token_embedding.weight",
                &[c.vocab_size, d],
            )?,
            position_embedding: ws.get(
                "text_model.embeddings.position_embedding.weight",
                &[c.max_position_embeddings, d],
            )?,
            encoder: Encoder::load(ws, "text_model.encoder", shape)?,
            final_layer_norm: layer_norm(ws, "text_model.final_layer_norm", d, c.layer_norm_eps)?,
            projection: Linear::load(
                ws,
                "text_projection",
                d,
                projection_dim,
                false,
                shape.layout,
            )?,
            max_positions: c.max_position_embeddings,
            vocab_size: c.vocab_size,
            eos_token_id: c.eos_token_id,
        })
    }

    /// Where transformers pools a sequence: `argmax(ids)` for legacy configs whose
    /// `eos_token_id` is 2, else the first end token. Without an end token, the last position.
    pub(crate) fn pool_index(&self, ids: &[u32]) -> usize {
        if self.eos_token_id == 2 {
            // first maximum, as torch.argmax
            let max = ids.iter().copied().max().unwrap_or(0);
            ids.iter().position(|&i| i == max).unwrap_or(0)
        } else {
            ids.iter()
                .position(|&i| i == self.eos_token_id)
                .unwrap_or(ids.len().saturating_sub(1))
        }
    }

    /// Projected (not normalised) features of sequences of equal length, `(b, projection_dim)`.
    pub(crate) fn forward(&self, ids: &[Vec<u32>]) -> Result<Tensor, EmbedError> {
        let b = ids.len();
        let s = ids.first().map_or(0, Vec::len);
        if b == 0 || s == 0 || ids.iter().any(|i| i.len() != s) {
            return Err(EmbedError::Input(
                "text batch must hold sequences of one non-zero length".into(),
            ));
        }
        if s > self.max_positions {
            return Err(EmbedError::Input(format!(
                "{s} tokens, more than the model's {} positions",
                self.max_positions
            )));
        }
        if let Some(bad) = ids
            .iter()
            .flatten()
            .find(|&&i| i as usize >= self.vocab_size)
        {
            return Err(EmbedError::Input(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.vocab_size
            )));
        }
        let pool: Vec<usize> = ids.iter().map(|i| self.pool_index(i)).collect();
        let device = self.token_embedding.device();
        let flat: Vec<u32> = ids.concat();
        let flat = Tensor::from_vec(flat, b * s, device)?;
        let d = self.token_embedding.dim(1)?;
        let x = self
            .token_embedding
            .index_select(&flat, 0)?
            .reshape((b, s, d))?;
        let x = x.broadcast_add(&self.position_embedding.narrow(0, 0, s)?)?;
        let mask = (s > 1)
            .then(|| {
                let m: Vec<f32> = (0..s)
                    .flat_map(|i| (0..s).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                    .collect();
                Tensor::from_vec(m, (s, s), device)?.to_dtype(self.token_embedding.dtype())
            })
            .transpose()?;
        let pooled = self.encoder.forward_pooled(&x, &pool, mask.as_ref())?;
        let pooled = self.final_layer_norm.forward(&pooled)?;
        Ok(self.projection.forward(&pooled)?)
    }
}

/// The vision tower plus its projection.
#[derive(Debug, Clone)]
pub(crate) struct VisionModel {
    /// `(c * p * p, d)`: the patch convolution as a matmul.
    patch_w_t: Tensor,
    /// `(1, d)`: class embedding plus its position embedding.
    class_token: Tensor,
    /// `(num_patches, d)`.
    patch_positions: Tensor,
    pre_layer_norm: LayerNorm,
    encoder: Encoder,
    post_layer_norm: LayerNorm,
    projection: Linear,
    channels: usize,
    image_size: usize,
    patch: usize,
}

impl VisionModel {
    fn load(ws: &Weights, c: &ClipVisionConfig, projection_dim: usize) -> Result<Self, EmbedError> {
        let d = c.hidden_size;
        let p = c.patch_size;
        let n = c.num_positions();
        let patch_w = ws.get(
            "vision_model.embeddings.patch_embedding.weight",
            &[d, c.num_channels, p, p],
        )?;
        let positions = ws.get("vision_model.embeddings.position_embedding.weight", &[n, d])?;
        let class = ws.get("vision_model.embeddings.class_embedding", &[d])?;
        let shape = EncoderShape {
            hidden: d,
            intermediate: c.intermediate_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            act: c.hidden_act,
            eps: c.layer_norm_eps,
            layout: Layout::Transposed {
                bf16_dots: ws.value_dtype() == DType::BF16,
            },
        };
        Ok(Self {
            patch_w_t: patch_w
                .reshape((d, c.num_channels * p * p))?
                .t()?
                .contiguous()?,
            class_token: (class.unsqueeze(0)? + positions.narrow(0, 0, 1)?)?,
            patch_positions: positions.narrow(0, 1, n - 1)?.contiguous()?,
            pre_layer_norm: layer_norm(ws, "vision_model.pre_layrnorm", d, c.layer_norm_eps)?,
            encoder: Encoder::load(ws, "vision_model.encoder", shape)?,
            post_layer_norm: layer_norm(ws, "vision_model.post_layernorm", d, c.layer_norm_eps)?,
            projection: Linear::load(
                ws,
                "visual_projection",
                d,
                projection_dim,
                false,
                shape.layout,
            )?,
            channels: c.num_channels,
            image_size: c.image_size,
            patch: p,
        })
    }

    /// Projected (not normalised) features of `pixels` `(b, c, s, s)`, `(b, projection_dim)`.
    pub(crate) fn forward(&self, pixels: &Tensor) -> Result<Tensor, EmbedError> {
        let dims = pixels.dims();
        let expected = [self.channels, self.image_size, self.image_size];
        if dims.len() != 4 || dims[1..] != expected || dims[0] == 0 {
            return Err(EmbedError::Input(format!(
                "pixel values have shape {dims:?}, the model takes (batch, {}, {}, {})",
                expected[0], expected[1], expected[2]
            )));
        }
        let b = dims[0];
        let (c, p, g) = (self.channels, self.patch, self.image_size / self.patch);
        let d = self.patch_w_t.dim(1)?;
        // Moved as given (f32 from the preprocessing) and converted where the model runs.
        let pixels = pixels
            .to_device(self.patch_w_t.device())?
            .to_dtype(self.patch_w_t.dtype())?;
        // (b, c, g, p, g, p) -> (b, g, g, c, p, p): each row is one patch, flattened as the
        // convolution kernel is.
        let patches = pixels
            .reshape(vec![b, c, g, p, g, p])?
            .permute(vec![0, 2, 4, 1, 3, 5])?
            .contiguous()?
            .reshape((b * g * g, c * p * p))?;
        let embeds = patches.matmul(&self.patch_w_t)?.reshape((b, g * g, d))?;
        let embeds = embeds.broadcast_add(&self.patch_positions)?;
        let class = self.class_token.unsqueeze(0)?.broadcast_as((b, 1, d))?;
        let x = Tensor::cat(&[&class, &embeds], 1)?;
        let x = self.pre_layer_norm.forward(&x)?;
        let pooled = self.encoder.forward_pooled(&x, &vec![0; b], None)?;
        let pooled = self.post_layer_norm.forward(&pooled)?;
        Ok(self.projection.forward(&pooled)?)
    }
}

/// Both towers.
#[derive(Debug, Clone)]
pub(crate) struct ClipModel {
    pub(crate) text: TextModel,
    pub(crate) vision: VisionModel,
}

impl ClipModel {
    /// Builds the network from `config` and the tensors in `ws`.
    pub(crate) fn load(ws: &Weights, config: &ClipConfig) -> Result<Self, EmbedError> {
        Ok(Self {
            text: TextModel::load(ws, &config.text_config, config.projection_dim)?,
            vision: VisionModel::load(ws, &config.vision_config, config.projection_dim)?,
        })
    }
}

/// Rows of a `(b, n)` tensor as vectors.
pub(crate) fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>, EmbedError> {
    Ok(t.to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?)
}
