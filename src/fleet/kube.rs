//! [`LeaseApi`] on a real Kubernetes API server, through kube-rs. The server is found the
//! way Kubernetes clients find it: `kubeconfig` when configured; in a pod the service
//! account (its token re-read as it rotates, the mounted CA); else `$KUBECONFIG` or
//! `~/.kube/config`. Each request is bounded by `api_timeout`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease as KubeLease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::api::{ApiError, Lease, LeaseApi};
use super::FleetConfig;

/// The longest holder identity read; the rest is cut.
const MAX_HOLDER_READ: usize = 1024;

/// The Leases of one namespace.
pub struct KubeLeases {
    api: Api<KubeLease>,
    /// The objects as last read, so a replace keeps what the slots do not own (labels,
    /// annotations, the chart's metadata).
    last: Mutex<HashMap<String, KubeLease>>,
    timeout: Duration,
}

impl KubeLeases {
    /// A client for `cfg`, and the namespace it works in.
    pub async fn connect(cfg: &FleetConfig) -> Result<(KubeLeases, String), String> {
        let mut config = client_config(cfg).await?;
        config.connect_timeout = Some(cfg.api_timeout);
        config.read_timeout = Some(cfg.api_timeout);
        config.write_timeout = Some(cfg.api_timeout);
        let namespace = cfg
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config)
            .map_err(|e| format!("cannot build the Kubernetes client: {e}"))?;
        let leases = KubeLeases {
            api: Api::namespaced(client, &namespace),
            last: Mutex::new(HashMap::new()),
            timeout: cfg.api_timeout,
        };
        Ok((leases, namespace))
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(api_error),
            Err(_) => Err(ApiError::failed(
                "timeout",
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }

    fn remember(&self, name: &str, l: &KubeLease) {
        if let Ok(mut m) = self.last.lock() {
            m.insert(name.to_string(), l.clone());
        }
    }
}

async fn client_config(cfg: &FleetConfig) -> Result<kube::Config, String> {
    if let Some(path) = &cfg.kubeconfig {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
        return kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| format!("kubeconfig {}: {e}", path.display()));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return kube::Config::incluster()
            .map_err(|e| format!("in-cluster config (the pod's service account): {e}"));
    }
    kube::Config::from_kubeconfig(&KubeConfigOptions::default())
        .await
        .map_err(|e| format!("no in-cluster config and no usable kubeconfig: {e}"))
}

impl LeaseApi for KubeLeases {
    async fn get(&self, name: &str) -> Result<Lease, ApiError> {
        let l = self.bounded(self.api.get(name)).await?;
        self.remember(name, &l);
        from_kube(&l)
    }

    async fn replace(&self, name: &str, lease: &Lease) -> Result<Lease, ApiError> {
        let base = self
            .last
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned())
            .unwrap_or_default();
        let object = to_kube(base, name, lease);
        let written = self
            .bounded(self.api.replace(name, &PostParams::default(), &object))
            .await?;
        self.remember(name, &written);
        from_kube(&written)
    }
}

fn api_error(e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) if s.code == 409 => ApiError::Conflict,
        kube::Error::Api(s) => {
            let kind = match s.code {
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                500..=599 => "server",
                _ => "other",
            };
            let hint = match s.code {
                403 => " (the Role must allow get and update on this Lease)",
                404 => " (the Lease must exist: the chart creates the group's Leases)",
                _ => "",
            };
            ApiError::failed(
                kind,
                format!("{} {}: {}{hint}", s.code, s.reason, s.message),
            )
        }
        kube::Error::SerdeError(e) => {
            ApiError::failed("malformed", format!("malformed Lease: {e}"))
        }
        other => ApiError::failed("unreachable", other.to_string()),
    }
}

fn from_kube(l: &KubeLease) -> Result<Lease, ApiError> {
    let resource_version = l
        .metadata
        .resource_version
        .clone()
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .ok_or_else(|| ApiError::failed("malformed", "a Lease without a resourceVersion"))?;
    let spec = l.spec.clone().unwrap_or_default();
    let ms = |t: Option<MicroTime>| t.map(|t| t.0.as_millisecond());
    Ok(Lease {
        resource_version,
        // Untrusted: bounded here (a long one still holds the slot), sanitized where shown.
        holder: spec
            .holder_identity
            .map(|h| h.chars().take(MAX_HOLDER_READ).collect()),
        duration_s: spec.lease_duration_seconds.map(i64::from),
        acquire_unix_ms: ms(spec.acquire_time),
        renew_unix_ms: ms(spec.renew_time),
        transitions: spec.lease_transitions.map(i64::from),
    })
}

fn to_kube(mut base: KubeLease, name: &str, l: &Lease) -> KubeLease {
    let time = |ms: Option<i64>| {
        ms.and_then(|m| Timestamp::from_millisecond(m).ok())
            .map(MicroTime)
    };
    base.metadata.name = Some(name.to_string());
    base.metadata.resource_version = Some(l.resource_version.clone());
    let mut spec = base.spec.take().unwrap_or_default();
    spec.holder_identity = l.holder.clone().filter(|h| !h.is_empty());
    spec.lease_duration_seconds = l.duration_s.and_then(|d| i32::try_from(d).ok());
    spec.acquire_time = time(l.acquire_unix_ms);
    spec.renew_time = time(l.renew_unix_ms);
    spec.lease_transitions = l.transitions.and_then(|t| i32::try_from(t).ok());
    base.spec = Some(spec);
    base
}
