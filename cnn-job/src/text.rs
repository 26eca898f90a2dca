//! The paper's preprocessing (section 4.2) on the engine: the dataset written as text, one
//! image per line `(one-hot label, pixel data)`, and read back with `text_file`.

use crate::cifar::{self, Images};
use discnn_engine::{register_op, MapFn};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Writes every image of `images` as one line of [`cifar::to_text_line`].
pub fn write_lines(images: &Images, path: &Path) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..images.len() {
        writeln!(out, "{}", cifar::to_text_line(images, i))?;
    }
    out.flush()
}

/// Parses one text line into (label, pixels); a bad line is an error naming what is wrong.
#[derive(Clone, Serialize, Deserialize)]
pub struct ParseLine;

impl MapFn for ParseLine {
    type In = String;
    type Out = Result<(u8, Vec<u8>), String>;
    fn call(&self, line: String) -> Self::Out {
        cifar::from_text_line(&line, "text line")
    }
}
register_op!(map ParseLine);
