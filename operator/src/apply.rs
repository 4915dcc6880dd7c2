//! Writing children: server-side apply with the operator's field manager, skipped when the object
//! already holds exactly what would be applied; deletion of children that are no longer wanted.
//!
//! Some API servers (1.20's among them) bump a Deployment's resourceVersion on every apply, even an
//! unchanged one, which would wake the watch and loop; so the apply is skipped when the hash of the
//! desired object, kept in an annotation, matches and no other field manager has changed a field the
//! operator sets (see `drift`). Hand edits are thus undone on the next reconcile.

use std::fmt::Debug;

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
    if let Some(existing) = api.get_opt(&name).await?
        && existing.annotations().get(APPLIED_HASH) == Some(&digest)
    {
        let live = serde_json::to_value(&existing).map_err(|e| Error::Encode(kind, e))?;
        if !drift::edited_by_others(&live, MANAGER) {
            return Ok(Applied { object: existing, written: false });
        }
        let want = serde_json::to_value(&desired).map_err(|e| Error::Encode(kind, e))?;
        match drift::first_difference(&live, &want) {
            None => return Ok(Applied { object: existing, written: false }),
            Some(field) => {
                tracing::info!(kind, name = %name, field, "child was changed by hand; restoring it")
            }
        }
    }
    let object = api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&desired)).await?;
    Ok(Applied { object, written: true })
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
