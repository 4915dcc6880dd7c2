//! Writing children: server-side apply with the operator's field manager, skipped when the object
//! already holds exactly what would be applied; deletion of children that are no longer wanted.
//!
//! Some API servers (1.20's among them) bump a Deployment's resourceVersion on every apply, even an
//! unchanged one, which would wake the watch and loop; so the apply is skipped when the hash of the
//! desired object, kept in an annotation, matches and the live object still holds every field the
//! operator sets (see `drift`). Hand edits are thus undone on the next reconcile. An edit an apply
//! cannot undo (a list element another field manager owns) is tried once per generation of the
//! object, then left with a warning, so it cannot turn into an apply per reconcile.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;

use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::drift;
use crate::error::Error;
use crate::resources::MANAGER;

pub const APPLIED_HASH: &str = "kubeinfer.io/applied-hash";

/// The child as it is after the call, and whether anything was written.
pub struct Applied<K> {
    pub object: K,
    pub written: bool,
}

/// The uid of the object's controlling owner. Children are built with this ModelDeployment as theirs,
/// so an existing object with another (or none) was not made by it and must not be taken over.
fn controller_uid<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta().owner_references.as_ref()?.iter().find(|o| o.controller == Some(true)).map(|o| o.uid.as_str())
}

/// An apply the API server turned down for the object itself (400 bad request, 403 forbidden or an
/// admission webhook's denial, 422 invalid) is reported on the ModelDeployment; anything else is retried.
fn refused(kind: &'static str, name: &str, e: kube::Error) -> Error {
    match e {
        kube::Error::Api(status) if matches!(status.code, 400 | 403 | 422) => {
            Error::Refused { kind, name: name.to_string(), message: status.message }
        }
        other => Error::Kube(other),
    }
}

pub(crate) fn hash<K: Serialize>(kind: &'static str, obj: &K) -> Result<String, Error> {
    let bytes = serde_json::to_vec(obj).map_err(|e| Error::Encode(kind, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

pub async fn apply<K>(api: &Api<K>, kind: &'static str, mut desired: K) -> Result<Applied<K>, Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    let digest = hash(kind, &desired)?;
    desired.annotations_mut().insert(APPLIED_HASH.into(), digest.clone());
    let mut correcting = None;
    let existing = api.get_opt(&name).await?;
    if let Some(existing) = &existing
        && controller_uid(existing) != controller_uid(&desired)
    {
        return Err(Error::NameConflict { kind, name });
    }
    if let Some(existing) = existing
        && existing.annotations().get(APPLIED_HASH) == Some(&digest)
    {
        let uid = existing.uid().unwrap_or_default();
        let live = serde_json::to_value(&existing).map_err(|e| Error::Encode(kind, e))?;
        let want = serde_json::to_value(&desired).map_err(|e| Error::Encode(kind, e))?;
        let version = version_of(&existing);
        match drift::first_difference(&live, &want) {
            None => {
                STUCK.forget(&uid);
                return Ok(Applied { object: existing, written: false });
            }
            Some(_) if STUCK.is_stuck(&uid, &version) => {
                return Ok(Applied { object: existing, written: false });
            }
            Some(field) => {
                tracing::info!(kind, name = %name, field, "child was changed by hand; restoring it");
                correcting = Some((uid, want));
            }
        }
    }
    let object = api
        .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&desired))
        .await
        .map_err(|e| refused(kind, &name, e))?;
    if let Some((uid, want)) = correcting {
        let after = serde_json::to_value(&object).map_err(|e| Error::Encode(kind, e))?;
        match drift::first_difference(&after, &want) {
            None => STUCK.forget(&uid),
            Some(field) => {
                tracing::warn!(kind, name = %name, field, "cannot restore the field (another field manager owns it, or the API server rewrites it); leaving it until the object changes");
                STUCK.remember(uid, version_of(&object));
            }
        }
    }
    Ok(Applied { object, written: true })
}

/// What changes when someone edits an object: its generation where it has one (status writes do not
/// move it, so a Deployment's rollout does not count), else its resourceVersion.
fn version_of<K: Resource>(object: &K) -> String {
    match object.meta().generation {
        Some(generation) => format!("generation {generation}"),
        None => object.resource_version().unwrap_or_default(),
    }
}

/// Objects an apply did not bring back in line, by uid, with the version (`version_of`) that apply
/// left. While an object stays at that version it is not applied again.
static STUCK: Stuck = Stuck(Mutex::new(BTreeMap::new()));

struct Stuck(Mutex<BTreeMap<String, String>>);

impl Stuck {
    fn is_stuck(&self, uid: &str, version: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(uid).is_some_and(|v| v == version)
    }

    fn remember(&self, uid: String, version: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, version);
    }

    fn forget(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

/// Deletes `name` if it exists and is controlled by `owner_uid`; returns whether it deleted anything.
/// Objects of the same name that someone else made are left alone.
pub async fn delete_owned<K>(api: &Api<K>, name: &str, owner_uid: &str) -> Result<bool, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let owned = existing.owner_references().iter().any(|r| r.uid == owner_uid && r.controller == Some(true));
    if !owned {
        return Ok(false);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: existing.uid(), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_object_is_left_alone_only_at_the_version_the_apply_left() {
        let stuck = Stuck(Mutex::new(BTreeMap::new()));
        stuck.remember("uid-1".into(), "42".into());
        assert!(stuck.is_stuck("uid-1", "42"));
        assert!(!stuck.is_stuck("uid-1", "43"), "edited again: worth another try");
        assert!(!stuck.is_stuck("uid-2", "42"));
        stuck.forget("uid-1");
        assert!(!stuck.is_stuck("uid-1", "42"));
    }
}
