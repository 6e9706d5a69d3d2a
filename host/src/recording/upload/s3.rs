//! One file to one object on an S3-compatible storage, with aws-sdk-s3: a single `PutObject`
//! up to the storage's part size, a multipart upload beyond it (a failed upload is aborted so
//! no orphaned parts are billed). The SDK retries each request a few times itself; the queue
//! ([`super::worker`]) retries the whole file with a longer backoff.

use super::config::StorageConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use std::path::Path;
use std::time::Duration;

/// Connecting to the endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One request (a whole object or one part) — a 16 MiB part at ~1 Mbit/s fits.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// Attempts the SDK makes per request before the queue's own backoff takes over.
pub const SDK_ATTEMPTS: u32 = 3;

/// Why a file did not go up.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The local file is gone or unreadable: retrying cannot help.
    #[error("cannot read {path}: {reason}")]
    Local { path: String, reason: String },
    /// The storage refused or could not be reached: retried.
    #[error("{0}")]
    Storage(String),
}

fn storage_error(e: impl std::error::Error) -> UploadError {
    UploadError::Storage(DisplayErrorContext(e).to_string())
}

/// A client for `storage`: its endpoint, region, path style and credentials (the standard AWS
/// environment when the config gives none).
pub async fn client(storage: &StorageConfig) -> Client {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .region(Region::new(storage.region.clone()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS));
    if !storage.access_key_id.is_empty() {
        loader = loader.credentials_provider(Credentials::new(
            &storage.access_key_id,
            &storage.secret_access_key,
            None,
            None,
            "switchboard-config",
        ));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(storage.path_style)
        // Checksums only where S3 requires them: many S3-compatible servers reject the
        // streaming checksum trailers the SDK would otherwise add to every upload.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if !storage.endpoint.is_empty() {
        config = config.endpoint_url(&storage.endpoint);
    }
    Client::from_conf(config.build())
}

/// The MIME type of a recorded file, by extension.
pub fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("webm") => "video/webm",
        Some("ivf") => "video/x-ivf",
        Some("ogg") => "audio/ogg",
        Some("h264") => "video/h264",
        _ => "application/octet-stream",
    }
}

/// Upload `path` to `key` in `storage`'s bucket; its size in bytes once the storage has it.
pub async fn upload(
    client: &Client,
    storage: &StorageConfig,
    path: &Path,
    key: &str,
) -> Result<u64, UploadError> {
    let local = |e: &dyn std::fmt::Display| UploadError::Local {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| local(&e))?
        .len();
    let content_type = content_type(&path.to_string_lossy());
    if size <= storage.part_size() {
        let body = ByteStream::from_path(path).await.map_err(|e| local(&e))?;
        client
            .put_object()
            .bucket(&storage.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(size as i64)
            .body(body)
            .send()
            .await
            .map_err(storage_error)?;
        return Ok(size);
    }
    let created = client
        .create_multipart_upload()
        .bucket(&storage.bucket)
        .key(key)
        .content_type(content_type)
        .send()
        .await
        .map_err(storage_error)?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| UploadError::Storage("CreateMultipartUpload returned no upload id".into()))?
        .to_owned();
    match upload_parts(client, storage, path, key, &upload_id, size).await {
        Ok(()) => Ok(size),
        Err(e) => {
            // Best effort: the storage's lifecycle rules catch what this misses.
            let _ = client
                .abort_multipart_upload()
                .bucket(&storage.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(e)
        }
    }
}

async fn upload_parts(
    client: &Client,
    storage: &StorageConfig,
    path: &Path,
    key: &str,
    upload_id: &str,
    size: u64,
) -> Result<(), UploadError> {
    let part_size = storage.part_size();
    let mut parts = Vec::new();
    let mut offset = 0;
    let mut number = 1;
    while offset < size {
        let length = part_size.min(size - offset);
        let body = ByteStream::read_from()
            .path(path)
            .offset(offset)
            .length(Length::Exact(length))
            .build()
            .await
            .map_err(|e| UploadError::Local {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let part = client
            .upload_part()
            .bucket(&storage.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(length as i64)
            .body(body)
            .send()
            .await
            .map_err(storage_error)?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(str::to_owned))
                .build(),
        );
        offset += length;
        number += 1;
    }
    client
        .complete_multipart_upload()
        .bucket(&storage.bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(storage_error)?;
    Ok(())
}
