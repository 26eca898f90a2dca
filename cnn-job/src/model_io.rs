//! Models saved in safetensors format: one tensor per parameter, named and shaped as PyTorch
//! names them (`conv1.weight` [8, 3, 5, 5], `conv1.bias` [8], …, `fc2.bias` [10]), and the
//! metadata block `{"discnn": "<JSON>"}` holding the spec, class names and normalisation.

use crate::cifar::CLASSES;
use crate::data::Normalization;
use crate::network::Network;
use crate::spec::NetSpec;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub spec: NetSpec,
    /// The spec as its text form, for people reading the file.
    pub layers: String,
    pub classes: Vec<String>,
    pub normalization: Normalization,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub meta: ModelMeta,
    pub params: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a safetensors file: {why}")]
    Format { file: String, why: String },
    #[error("{file}: {why}")]
    Content { file: String, why: String },
}

impl Model {
    pub fn new(net: &Network, params: Vec<f32>, normalization: Normalization) -> Model {
        Model {
            meta: ModelMeta {
                spec: net.spec().clone(),
                layers: net.spec().to_string(),
                classes: CLASSES.iter().map(|c| c.to_string()).collect(),
                normalization,
            },
            params,
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let net = Network::new(self.meta.spec.clone()).map_err(|e| e.to_string())?;
        // safetensors stores little-endian values whatever the host's byte order.
        let data: Vec<Vec<u8>> = net
            .tensors()
            .iter()
            .map(|t| {
                self.params[t.range.clone()]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect()
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = net
            .tensors()
            .iter()
            .zip(&data)
            .map(|(t, bytes)| {
                TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                    .map(|v| (t.name.clone(), v))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        let meta = serde_json::to_string(&self.meta).map_err(|e| e.to_string())?;
        let info = HashMap::from([("discnn".to_string(), meta)]);
        safetensors::serialize(views, &Some(info)).map_err(|e| e.to_string())
    }

    /// Writes through a temporary file renamed into place, so a failed save leaves no partial
    /// model behind.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let file = path.display().to_string();
        let bytes = self.to_bytes().map_err(|why| ModelError::Content {
            file: file.clone(),
            why,
        })?;
        let tmp = path.with_extension("safetensors.partial");
        let io = |source| ModelError::Io {
            file: file.clone(),
            source,
        };
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a model file, local or on object storage (`s3://…`).
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let file = path.display().to_string();
        let io = |source| ModelError::Io {
            file: file.clone(),
            source,
        };
        let bytes = if discnn_engine::objects::is_object_url(path) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut discnn_engine::objects::Location::new(path)
                    .and_then(|l| l.open())
                    .map_err(io)?,
                &mut bytes,
            )
            .map_err(io)?;
            bytes
        } else {
            std::fs::read(path).map_err(io)?
        };
        Model::from_bytes(&file, &bytes)
    }

    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Model, ModelError> {
        let content = |why: String| ModelError::Content {
            file: file.to_string(),
            why,
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| ModelError::Format {
            file: file.to_string(),
            why: e.to_string(),
        })?;
        let meta_json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("discnn"))
            .ok_or_else(|| content("no `discnn` metadata (spec, classes, normalisation)".into()))?;
        let meta: ModelMeta = serde_json::from_str(meta_json)
            .map_err(|e| content(format!("the `discnn` metadata: {e}")))?;
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Format {
            file: file.to_string(),
            why: e.to_string(),
        })?;
        let net = Network::new(meta.spec.clone()).map_err(|e| content(e.to_string()))?;
        // The spec in the metadata is a claim: its parameters must be in the file before a
        // buffer for them is allocated.
        if net.param_len().saturating_mul(4) > bytes.len() {
            return Err(content(format!(
                "the spec has {} parameters, more than the file's {} bytes can hold",
                net.param_len(),
                bytes.len()
            )));
        }
        let mut params = vec![0f32; net.param_len()];
        for t in net.tensors() {
            let view = tensors
                .tensor(&t.name)
                .map_err(|_| content(format!("tensor `{}` is missing", t.name)))?;
            if view.dtype() != Dtype::F32 || view.shape() != t.shape.as_slice() {
                return Err(content(format!(
                    "tensor `{}` is {:?} {:?}, expected F32 {:?}",
                    t.name,
                    view.dtype(),
                    view.shape(),
                    t.shape
                )));
            }
            for (p, b) in params[t.range.clone()]
                .iter_mut()
                .zip(view.data().chunks_exact(4))
            {
                *p = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(Model { meta, params })
    }
}
