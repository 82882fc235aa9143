//! Data-set export: a collection (`/v1/collections/{name}/export`) or a search's results
//! (`/v1/export`) streamed as a zip or tar with the images and a provenance manifest (see the
//! parent module for the guarantees).

use super::*;

/// Format and container of an export.
#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `coco` (default), `yolo`, `yolo-seg` (outlines), `voc` or `csv`.
    pub format: Option<String>,
    /// `zip` (default) or `tar`.
    pub archive: Option<String>,
    /// Export the original images with sensitive regions unredacted (roles with
    /// `view_unredacted` only; audited).
    pub unredacted: Option<bool>,
}

impl ExportQuery {
    fn parse(&self) -> Result<(DatasetFormat, ArchiveFormat), ApiError> {
        let format = self
            .format
            .as_deref()
            .unwrap_or("coco")
            .parse::<DatasetFormat>()
            .map_err(|e| ApiError::invalid(format!("format: {e}")))?;
        let archive = self
            .archive
            .as_deref()
            .unwrap_or("zip")
            .parse::<ArchiveFormat>()
            .map_err(|e| ApiError::invalid(format!("archive: {e}")))?;
        Ok((format, archive))
    }
}

/// Exports a collection as a data set with its images and a provenance manifest.
#[utoipa::path(get, path = "/v1/collections/{name}/export", tag = "collections",
    params(("name" = String, Path, description = "collection name"), ExportQuery),
    responses(
        (status = 200, description = "the archive, streamed", content_type = "application/zip", body = Vec<u8>),
        (status = 400, description = "bad format or archive", body = ErrorBody),
        (status = 403, description = "unredacted=true without the view_unredacted permission", body = ErrorBody),
        (status = 404, description = "no such collection", body = ErrorBody),
        (status = 409, description = "an image file is missing or changed", body = ErrorBody),
    ))]
pub async fn export_collection(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    q: ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    caller.require(&state, Action::Export).await?;
    let q = q.parsed()?;
    let (format, archive) = q.parse()?;
    let unredacted = wants_unredacted(&state, &caller, q.unredacted).await?;
    let c = state.collections().get(&name)?;
    let records = records_of(&state, c.ids.clone()).await?;
    let source = serde_json::json!({ "collection": c.name, "description": c.description });
    stream_export(
        &state,
        records,
        (format, archive, unredacted),
        (source.clone(), source),
        &caller,
        &format!("{name}-{format}"),
    )
    .await
}

/// A search to export.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSearch {
    /// The search.
    pub search: SearchBody,
    /// How many results to take (default 100).
    pub max_results: Option<usize>,
    /// `coco` (default), `yolo`, `yolo-seg` (outlines), `voc` or `csv`.
    pub format: Option<String>,
    /// `zip` (default) or `tar`.
    pub archive: Option<String>,
    /// Export the original images with sensitive regions unredacted (roles with
    /// `view_unredacted` only; audited).
    pub unredacted: Option<bool>,
}

impl UploadRequest for ExportSearch {
    const WHAT: &'static str = "an export of a search";
}

/// The multipart form of an export of a search by an uploaded image: a JSON `request` part and
/// an `image` part, as `/v1/search` takes them.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the form for the OpenAPI document only
pub struct ExportUpload {
    /// The export as JSON ([`ExportSearch`]).
    request: ExportSearch,
    /// The "more like this" image (JPEG, PNG, WebP or GIF).
    #[schema(format = Binary, value_type = String)]
    image: Vec<u8>,
}

/// Exports the results of a search as a data set: JSON, or multipart with the uploaded "more
/// like this" image of a search by image.
#[utoipa::path(post, path = "/v1/export", tag = "collections",
    request_body(content(
        (ExportSearch = "application/json"),
        (ExportUpload = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "the archive, streamed", content_type = "application/zip", body = Vec<u8>),
        (status = 400, description = "bad search, format or archive", body = ErrorBody),
        (status = 403, description = "unredacted=true without the view_unredacted permission", body = ErrorBody),
        (status = 409, description = "an image file is missing or changed", body = ErrorBody),
    ))]
pub async fn export_search(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    caller.require(&state, Action::Export).await?;
    let (body, upload) = search_body::<ExportSearch>(&state, req).await?;
    let (format, archive) = ExportQuery {
        format: body.format.clone(),
        archive: body.archive.clone(),
        unredacted: None,
    }
    .parse()?;
    let unredacted = wants_unredacted(&state, &caller, body.unredacted).await?;
    let image_sha256 = upload.as_ref().map(|u| u.sha256.clone());
    let ids = search_ids(&state, &body.search, upload, body.max_results).await?;
    let records = records_of(&state, ids).await?;
    let mut source = serde_json::json!({ "search": body.search, "max_results": body.max_results });
    if let Some(sha) = &image_sha256 {
        source["image_sha256"] = sha.as_str().into();
    }
    let audited = serde_json::json!({
        "search": body.search.audit_summary(state.audit(), image_sha256.as_deref()),
        "max_results": body.max_results,
    });
    stream_export(
        &state,
        records,
        (format, archive, unredacted),
        (source, audited),
        &caller,
        &format!("search-{format}"),
    )
    .await
}

/// Whether the caller may and does ask for unredacted images (403, audited, when asking
/// without the permission).
async fn wants_unredacted(
    state: &AppState,
    caller: &Caller,
    asked: Option<bool>,
) -> Result<bool, ApiError> {
    if asked != Some(true) {
        return Ok(false);
    }
    caller.require(state, Action::ExportUnredacted).await?;
    Ok(true)
}

async fn stream_export(
    state: &AppState,
    records: Vec<Record>,
    (format, archive, unredacted): (DatasetFormat, ArchiveFormat, bool),
    // What `provenance.json` says the export came from (the request as given: the recipient
    // gets these records anyway), and what the audit trail keeps of it (bounded, refs only).
    (source, audited): (serde_json::Value, serde_json::Value),
    caller: &Caller,
    stem: &str,
) -> Result<Response, ApiError> {
    let info = crate::http::catalog::info_of(state);
    let provenance = Provenance {
        created: Utc::now(),
        requested_by: caller.principal.account.clone(),
        source: source.clone(),
        // Not the data directory: where the library lives is not the recipient's business.
        library: serde_json::json!({
            "records": info.records,
            "format_version": info.format_version,
        }),
        model: info.model,
        format,
        images_redacted: !unredacted,
        records: Vec::new(),
    };
    let mode = if unredacted {
        ImageMode::Originals
    } else {
        ImageMode::Redacted {
            redaction: state.redaction().clone(),
            limits: models::preprocess::DecodeLimits {
                max_pixels: state.limits().max_image_pixels,
                ..Default::default()
            },
        }
    };
    let records = blocking(move || {
        export::check_export(&records, format)?;
        Ok(records)
    })
    .await?;
    // Recorded before the first byte leaves; `unredacted` only when originals with sensitive
    // regions go out.
    let sensitive = records.iter().any(|r| state.redaction().applies_to(r));
    let mut entry = caller.entry(Action::Export);
    entry.query = Some(serde_json::json!({
        "source": audited,
        "format": format,
        "archive": archive,
        "redacted": !unredacted,
    }));
    entry.records = records.iter().map(|r| r.id.clone()).collect();
    entry.unredacted = unredacted && sensitive;
    caller.write(state, entry).await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let wait = state.limits().export_send_timeout();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
            runtime,
            wait,
        };
        let result =
            export::write_dataset_as(&mut writer, &records, format, archive, &provenance, &mode)
                .map_err(|e| e.to_string())
                .and_then(|()| writer.flush().map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::error!(error = %e, "export failed while streaming");
            // The status is already sent: breaking the body is the only honest signal left.
            // Never wait for a client that stopped reading.
            let _ = tx.try_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(archive.content_type()),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    let disposition = format!(
        "attachment; filename=\"{stem}.{}\"",
        archive.extension().trim_start_matches('.')
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(ApiError::internal)?,
    );
    Ok(resp)
}

const CHUNK: usize = 64 * 1024;

/// `Write` into the response body's channel, in chunks of [`CHUNK`] bytes. A chunk the client
/// does not take within `wait` fails the write (the export is abandoned).
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
    runtime: tokio::runtime::Handle,
    wait: std::time::Duration,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let sent = self
            .runtime
            .block_on(self.tx.send_timeout(Ok(chunk), self.wait));
        sent.map_err(|e| match e {
            mpsc::error::SendTimeoutError::Timeout(_) => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} s; export abandoned",
                    self.wait.as_secs()
                ),
            ),
            mpsc::error::SendTimeoutError::Closed(_) => {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            }
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests;
