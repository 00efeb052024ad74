//! The one reader of multipart forms (uploads): every part is read into memory up to
//! its own cap, and the number of parts is bounded, so no form can make the server hold
//! more than the caller allowed. Pages turn the two refusals into their own messages.

use actix_multipart::Multipart;
use futures_util::StreamExt;

/// One form field, or one file with the name the browser gave it.
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub bytes: Vec<u8>,
}

impl Part {
    /// The field as text; `None` when it is not UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    /// A checkbox's value: ticked when sent as `1` or `on`.
    pub fn ticked(&self) -> bool {
        matches!(self.text(), Some("1" | "on"))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum UploadError {
    /// Not a multipart body, a broken part, or more parts than any of our forms has.
    Malformed,
    /// The named part is larger than its cap (`max` bytes).
    TooLarge { field: String, max: usize },
}

/// More than any form of ours sends; a body with more parts is refused.
const MAX_PARTS: usize = 32;

/// Reads every part, each up to `cap(name)` bytes. A part over its cap is read on (and
/// dropped, up to as much again) before the refusal, so a browser still sending gets the
/// answer rather than a reset connection.
pub async fn read(
    mut form: Multipart,
    cap: impl Fn(&str) -> usize,
) -> Result<Vec<Part>, UploadError> {
    let mut parts = Vec::new();
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|_| UploadError::Malformed)?;
        if parts.len() == MAX_PARTS {
            return Err(UploadError::Malformed);
        }
        let name = field.name().unwrap_or("").to_string();
        let file_name = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .map(str::to_string);
        let max = cap(&name);
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let b = chunk.map_err(|_| UploadError::Malformed)?;
            if bytes.len() + b.len() > max {
                let mut seen = bytes.len() + b.len();
                while let Some(Ok(more)) = field.next().await {
                    seen += more.len();
                    if seen > 2 * max {
                        break;
                    }
                }
                return Err(UploadError::TooLarge { field: name, max });
            }
            bytes.extend_from_slice(&b);
        }
        parts.push(Part {
            name,
            file_name,
            bytes,
        });
    }
    Ok(parts)
}

/// Whole megabytes, rounded down, for messages ("max {mb} MB").
pub fn megabytes(bytes: usize) -> usize {
    bytes / (1024 * 1024)
}
