//! The embedded S3-compatible origin: buckets as directories under a root,
//! each with its own access key, SigV4 checked on every request (s3s), objects
//! written to a temporary file and renamed into place (s3s-fs).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::dto::{CopyObjectInput, CopySource, CreateBucketInput, DeleteBucketInput, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Result, s3_error};
use tokio::net::{TcpListener, TcpSocket};

/// One bucket and the only credentials that open it.
#[derive(Clone, Debug)]
pub struct BucketAccess {
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Unsigned GET and HEAD of objects are allowed too (S3's public-read):
    /// for clients that cannot sign, such as nginx in `bench/compare`.
    pub public_read: bool,
    /// These credentials are an account, as S3's: they may also create
    /// buckets, list and delete them, and open every bucket that no other
    /// `BucketAccess` names (so a test suite creates the buckets it needs).
    pub creates_buckets: bool,
}

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Root { path: PathBuf, source: std::io::Error },
    #[error("listening on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("opening the store: {0}")]
    Open(String),
}

/// Refuses requests whose access key does not own the bucket they address,
/// unsigned ones unless they read an object of a public-read bucket, and
/// object keys that could resolve outside their bucket's directory (s3s-fs
/// joins keys to the bucket's path and keeps them only inside the store's
/// root, where other buckets and its own metadata files live).
struct BucketOwners {
    bucket_by_key: HashMap<String, String>,
    public_read: HashSet<String>,
    /// The keys that are accounts (`creates_buckets`).
    account_keys: HashSet<String>,
    /// The buckets an access names: never an account's unless it names them.
    named: HashSet<String>,
    root: PathBuf,
}

/// Whether `key` names a file inside its bucket's directory and nothing else:
/// no `.` or `..` segment, no leading `/` (which would join as an absolute
/// path), no backslash and no NUL or other control byte.
fn key_stays_in_bucket(key: &str) -> bool {
    !key.starts_with('/')
        && !key.bytes().any(|b| b == b'\\' || b.is_ascii_control())
        && key.split('/').all(|segment| segment != "." && segment != "..")
}

/// Whether anything but directories lies under `dir` (s3s-fs leaves a
/// deleted object's directories behind; an unreadable entry counts as a file,
/// so that nothing is deleted unseen).
fn holds_a_file(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    entries
        .map(|entry| entry.and_then(|entry| entry.file_type().map(|kind| (entry.path(), kind))))
        .any(|entry| match entry {
            Ok((path, kind)) if kind.is_dir() => holds_a_file(&path),
            _ => true,
        })
}

fn check_key(key: &str) -> S3Result<()> {
    if key_stays_in_bucket(key) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Object keys may not hold . or .. segments, a leading /, backslashes or control bytes"
        ))
    }
}

impl BucketOwners {
    /// Whether `access_key` opens `bucket`: its own, or, for an account,
    /// any bucket no other access names.
    fn opens(&self, access_key: &str, bucket: &str) -> bool {
        let own = self.bucket_by_key.get(access_key).is_some_and(|owned| owned == bucket);
        own || (self.account_keys.contains(access_key) && !self.named.contains(bucket))
    }

    /// The source of a copy must be a key of a bucket the same credentials open.
    fn check_copy_source(&self, source: &CopySource, credentials: Option<&s3s::auth::Credentials>) -> S3Result<()> {
        let CopySource::Bucket { bucket, key, .. } = source else {
            return Err(s3_error!(NotImplemented, "Only bucket/key copy sources are supported"));
        };
        check_key(key)?;
        if credentials.is_some_and(|c| self.opens(&c.access_key, bucket)) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "This access key does not open the copy source's bucket"))
        }
    }

    /// Listing buckets names every bucket in the store: allowed to an account
    /// only while no other access names a bucket there.
    fn may_list_buckets(&self, access_key: &str) -> bool {
        self.account_keys.contains(access_key) && self.named.iter().all(|bucket| self.bucket_by_key.get(access_key) == Some(bucket))
    }
}

#[async_trait::async_trait]
impl S3Access for BucketOwners {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let bucket = match cx.s3_path() {
            S3Path::Root => {
                return match cx.credentials() {
                    Some(credentials) if self.may_list_buckets(&credentials.access_key) => Ok(()),
                    _ => Err(s3_error!(AccessDenied, "Listing buckets is not allowed")),
                };
            }
            S3Path::Bucket { bucket } => bucket,
            S3Path::Object { bucket, key } => {
                check_key(key)?;
                bucket
            }
        };
        let Some(credentials) = cx.credentials() else {
            let reads_object = matches!(cx.s3_op().name(), "GetObject" | "HeadObject");
            return if reads_object && self.public_read.contains(&**bucket) {
                Ok(())
            } else {
                Err(s3_error!(AccessDenied, "Requests must be signed"))
            };
        };
        let creates_or_deletes = matches!(cx.s3_op().name(), "CreateBucket" | "DeleteBucket");
        if creates_or_deletes && !self.account_keys.contains(&credentials.access_key) {
            return Err(s3_error!(AccessDenied, "Only an account's access key creates or deletes buckets"));
        }
        if self.opens(&credentials.access_key, bucket) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "This access key does not open this bucket"))
        }
    }

    /// S3's answer to creating a bucket one already has (s3s-fs answers
    /// `BucketAlreadyExists`, which means another account's).
    async fn create_bucket(&self, request: &mut S3Request<CreateBucketInput>) -> S3Result<()> {
        if self.root.join(&request.input.bucket).exists() {
            return Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it."
            ));
        }
        Ok(())
    }

    /// S3 deletes empty buckets only (s3s-fs would delete every object), and
    /// a bucket an access names stays, as the config that names it does.
    async fn delete_bucket(&self, request: &mut S3Request<DeleteBucketInput>) -> S3Result<()> {
        let bucket = &request.input.bucket;
        if self.named.contains(bucket) {
            return Err(s3_error!(AccessDenied, "This bucket is named by the store's configuration"));
        }
        let path = self.root.join(bucket);
        if !path.is_dir() {
            return Err(s3_error!(NoSuchBucket, "The specified bucket does not exist"));
        }
        if holds_a_file(&path) {
            return Err(s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty"));
        }
        Ok(())
    }

    async fn copy_object(&self, request: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.check_copy_source(&request.input.copy_source, request.credentials.as_ref())
    }

    async fn upload_part_copy(&self, request: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.check_copy_source(&request.input.copy_source, request.credentials.as_ref())
    }
}

/// Builds the S3 service over `root`, creating the buckets' directories.
pub fn service(root: PathBuf, buckets: &[BucketAccess]) -> Result<S3Service, StoreError> {
    let mut auth = SimpleAuth::new();
    let mut bucket_by_key = HashMap::new();
    let mut public_read = HashSet::new();
    let mut account_keys = HashSet::new();
    for access in buckets {
        let path = root.join(&access.bucket);
        std::fs::create_dir_all(&path).map_err(|source| StoreError::Root { path, source })?;
        auth.register(access.access_key_id.clone(), access.secret_access_key.clone().into());
        bucket_by_key.insert(access.access_key_id.clone(), access.bucket.clone());
        if access.public_read {
            public_read.insert(access.bucket.clone());
        }
        if access.creates_buckets {
            account_keys.insert(access.access_key_id.clone());
        }
    }
    let named = buckets.iter().map(|access| access.bucket.clone()).collect();
    let store = s3s_fs::FileSystem::new(&root).map_err(|e| StoreError::Open(format!("{e:?}")))?;
    let mut builder = S3ServiceBuilder::new(store);
    builder.set_auth(auth);
    builder.set_access(BucketOwners {
        bucket_by_key,
        public_read,
        account_keys,
        named,
        root,
    });
    Ok(builder.build())
}

/// Whether another process may listen on the store's port too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortSharing {
    /// A busy port is an error, so that a second process started by mistake
    /// fails at once instead of answering half of the first one's requests.
    Exclusive,
    /// With `SO_REUSEPORT` (which both sockets must set), so that a later
    /// `keyfront serve --upgrade` starting its embedded origin while this
    /// process still serves from the same directory binds the same port
    /// (both answer alike until this one exits). Such a port is never busy
    /// to another `ForUpgrades` bind: the caller checks first when it is not
    /// an upgrade.
    ForUpgrades,
}

/// Binds `address` (port 0 picks a free one) and returns the listener and
/// the bound address. Called inside a tokio runtime.
pub fn bind(address: SocketAddr, sharing: PortSharing) -> Result<(TcpListener, SocketAddr), StoreError> {
    let listen_error = |source| StoreError::Listen { address, source };
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(listen_error)?;
    socket.set_reuseaddr(true).map_err(listen_error)?;
    socket.set_reuseport(sharing == PortSharing::ForUpgrades).map_err(listen_error)?;
    socket.bind(address).map_err(listen_error)?;
    let listener = socket.listen(1024).map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    Ok((listener, bound))
}

/// Serves S3 requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, service: S3Service) {
    let connections = ConnectionBuilder::new(TokioExecutor::new());
    loop {
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(error) => {
                tracing::warn!(%error, "embedded origin: accepting a connection failed");
                continue;
            }
        };
        // Without it, Nagle's algorithm holds each body write for the
        // client's delayed ACK: about 40 ms per MiB streamed.
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%error, "embedded origin: TCP_NODELAY not set");
        }
        let connection = connections.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "embedded origin: connection ended with an error");
            }
        });
    }
}

/// Starts the store on its own thread and runtime, for processes whose main
/// thread belongs to pingora. Returns the bound address once it listens.
pub fn spawn(root: PathBuf, address: SocketAddr, sharing: PortSharing, buckets: Vec<BucketAccess>) -> Result<SocketAddr, StoreError> {
    spawn_until(root, address, sharing, buckets, std::future::pending()).map(|(bound, _)| bound)
}

/// As `spawn`, serving until `stop` completes; the thread's handle, to
/// wait for the store to have stopped.
pub fn spawn_until(
    root: PathBuf,
    address: SocketAddr,
    sharing: PortSharing,
    buckets: Vec<BucketAccess>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, std::thread::JoinHandle<()>), StoreError> {
    let service = service(root, &buckets)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("embedded-origin")
        .enable_all()
        .build()
        .map_err(|e| StoreError::Open(e.to_string()))?;
    let (listener, bound) = runtime.block_on(async { bind(address, sharing) })?;
    let thread = std::thread::Builder::new()
        .name("embedded-origin".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = serve(listener, service) => {}
                    () = stop => {}
                }
            })
        })
        .map_err(|e| StoreError::Open(e.to_string()))?;
    Ok((bound, thread))
}

#[cfg(test)]
mod tests {
    use super::key_stays_in_bucket;

    #[test]
    fn keys_that_could_leave_their_bucket_are_refused() {
        for key in ["a.mp4", "videos/a.mp4", "a..b", ".hidden", "a/.x/b", "a b+c", "caf\u{e9}", "a//b"] {
            assert!(key_stays_in_bucket(key), "{key:?}");
        }
        for key in [
            "..",
            "../other/x",
            "a/../../other/x",
            "a/./b",
            ".",
            "a/..",
            "/etc/passwd",
            "a\\..\\b",
            "a\0b",
            "a\nb",
        ] {
            assert!(!key_stays_in_bucket(key), "{key:?}");
        }
    }
}
