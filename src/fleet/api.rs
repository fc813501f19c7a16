//! What the slot machine needs of the Kubernetes API: read one Lease, replace it with the
//! resourceVersion read (409 when someone else wrote first). [`MemoryLeases`] is the same
//! API in memory, with the API server's optimistic concurrency: the unit tests race
//! several machines on it, and `backtest --fleet` replays a fleet through it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

/// The fields of a Lease the slots use. Everything in it is untrusted: another replica (or
/// anyone with the group's rights) may have written it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// `metadata.resourceVersion`: opaque; a replace must carry the one read.
    pub resource_version: String,
    /// `spec.holderIdentity`; `None` or empty: free.
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds`.
    pub duration_s: Option<i64>,
    /// `spec.acquireTime`, Unix ms.
    pub acquire_unix_ms: Option<i64>,
    /// `spec.renewTime`, Unix ms.
    pub renew_unix_ms: Option<i64>,
    /// `spec.leaseTransitions`.
    pub transitions: Option<i64>,
}

impl Lease {
    /// The holder, if there is one (empty is none).
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref().filter(|h| !h.is_empty())
    }
}

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 409: the Lease changed since it was read.
    Conflict,
    /// Anything else: unreachable, TLS, a timeout, 401/403, 404, 5xx, a malformed object.
    /// `kind` is a metric label (`unreachable`, `timeout`, `unauthorized`, `forbidden`,
    /// `not_found`, `server`, `malformed`, `other`); `message` is for people.
    Failed { kind: &'static str, message: String },
}

impl ApiError {
    pub fn failed(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Failed {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Conflict => "conflict",
            ApiError::Failed { kind, .. } => kind,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Conflict => write!(f, "409 Conflict: the Lease changed since it was read"),
            ApiError::Failed { message, .. } => write!(f, "{message}"),
        }
    }
}

/// Read and replace Leases by name, in one namespace.
#[allow(async_fn_in_trait)]
pub trait LeaseApi {
    async fn get(&self, name: &str) -> Result<Lease, ApiError>;
    /// Replace `name` with `lease` if its `resource_version` is still the stored one;
    /// returns what was stored (with its new resourceVersion).
    async fn replace(&self, name: &str, lease: &Lease) -> Result<Lease, ApiError>;
}

/// Leases in memory, with a resourceVersion per write; names absent answer 404, and every
/// call can be made to fail (`down`).
#[derive(Debug, Default)]
pub struct MemoryLeases {
    inner: RefCell<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    leases: BTreeMap<String, Lease>,
    version: u64,
    down: Option<ApiError>,
    calls: u64,
}

impl MemoryLeases {
    /// `names` created empty (no holder), as the chart creates them.
    pub fn with(names: impl IntoIterator<Item = String>) -> MemoryLeases {
        let m = MemoryLeases::default();
        for n in names {
            m.put(&n, Lease::default());
        }
        m
    }

    /// Store `lease` under `name` as a writer outside the slots would (a new version).
    pub fn put(&self, name: &str, mut lease: Lease) {
        let mut m = self.inner.borrow_mut();
        m.version += 1;
        lease.resource_version = m.version.to_string();
        m.leases.insert(name.to_string(), lease);
    }

    pub fn peek(&self, name: &str) -> Option<Lease> {
        self.inner.borrow().leases.get(name).cloned()
    }

    /// Every call fails with `error` until `up`.
    pub fn down(&self, error: ApiError) {
        self.inner.borrow_mut().down = Some(error);
    }

    pub fn up(&self) {
        self.inner.borrow_mut().down = None;
    }

    /// Calls answered so far.
    pub fn calls(&self) -> u64 {
        self.inner.borrow().calls
    }
}

impl LeaseApi for MemoryLeases {
    async fn get(&self, name: &str) -> Result<Lease, ApiError> {
        let mut m = self.inner.borrow_mut();
        m.calls += 1;
        if let Some(e) = &m.down {
            return Err(e.clone());
        }
        m.leases
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::failed("not_found", format!("lease {name} not found")))
    }

    async fn replace(&self, name: &str, lease: &Lease) -> Result<Lease, ApiError> {
        let mut m = self.inner.borrow_mut();
        m.calls += 1;
        if let Some(e) = &m.down {
            return Err(e.clone());
        }
        let stored = m
            .leases
            .get(name)
            .ok_or_else(|| ApiError::failed("not_found", format!("lease {name} not found")))?;
        if stored.resource_version != lease.resource_version {
            return Err(ApiError::Conflict);
        }
        m.version += 1;
        let mut new = lease.clone();
        new.resource_version = m.version.to_string();
        m.leases.insert(name.to_string(), new.clone());
        Ok(new)
    }
}
