//! Reconciles without a cluster, in controller-rs's style: a `Context` whose client talks to a
//! `tower_test` mock, and an `ApiServerVerifier` that answers the reconcile's requests in order, asserting
//! that each is the one expected. A missing request, an extra one, or one out of order fails the test
//! with the request named; nothing waits longer than two seconds.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::{Client, Resource};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_test::mock::{Handle, SendResponse};

use crate::apply::{APPLIED_HASH, hash};
use crate::context::{Context, Settings};
use crate::controller;
use crate::crd::ModelDeployment;
use crate::discovery::Capabilities;
use crate::error::Error;
use crate::metrics::Metrics;

pub const SERVER_IMAGE: &str = "ghcr.io/kubeinfer/kubeinfer-server:test";
pub const EDGE_IMAGE: &str = "nginxinc/nginx-unprivileged:test";
pub const RESYNC: Duration = Duration::from_secs(300);
pub const RETRY: Duration = Duration::from_secs(30);
/// The longest any scenario waits for a request or for the reconcile.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A cluster that serves autoscaling/v2, policy/v1 and the ServiceMonitor CRD, but not KEDA (whose
/// ScaledObject the envtest scenarios cover against a real API server).
pub const EVERYTHING: Capabilities = Capabilities { keda: false, ..Capabilities::ALL };

/// The ModelDeployment `digits` in namespace `ml`, as the API server hands it over, with `spec`.
pub fn model_deployment(spec: Value) -> ModelDeployment {
    serde_json::from_value(json!({
        "apiVersion": "kubeinfer.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "digits", "namespace": "ml", "uid": "6f1c2a7e-0000-4000-8000-000000000001",
                     "generation": 3, "resourceVersion": "1041"},
        "spec": spec,
    }))
    .expect("a valid ModelDeployment")
}

/// A Context on a cluster serving `capabilities`, and the verifier standing in for its API server.
pub fn test_context(capabilities: Capabilities) -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let settings = Settings {
        server_image: SERVER_IMAGE.into(),
        edge_image: EDGE_IMAGE.into(),
        resync: RESYNC,
        retry: RETRY,
        prometheus_url: None,
        allowed_images: Vec::new(),
    };
    let ctx = Context::new(
        Client::new(service, "default"),
        settings,
        Arc::new(RwLock::new(capabilities)),
        Arc::new(Metrics::new()),
    );
    (Arc::new(ctx), ApiServerVerifier { handle, reconciled: None, md: Value::Null })
}

/// `obj` as the operator last applied it: with the hash annotation that tells the next reconcile to skip it.
pub fn as_applied<K: Resource + Serialize>(mut obj: K) -> Value {
    let digest = hash("test object", &obj).expect("an object that serialises");
    obj.meta_mut().annotations.get_or_insert_with(BTreeMap::new).insert(APPLIED_HASH.into(), digest);
    serde_json::to_value(obj).expect("an object that serialises")
}

/// Stands in for the API server: answers each request of one reconcile, in the order a test lists them.
pub struct ApiServerVerifier {
    handle: Handle<Request<Body>, Response<Body>>,
    /// Fires when the reconcile has returned: from then on, no request can come.
    reconciled: Option<oneshot::Receiver<()>>,
    /// The ModelDeployment being reconciled, as stored.
    md: Value,
}

/// A verifier running its script on a task, waiting for the reconcile it answers.
pub struct Scripted {
    md: ModelDeployment,
    task: JoinHandle<()>,
    reconciled: oneshot::Sender<()>,
}

impl ApiServerVerifier {
    /// Answers the requests of a reconcile of `md` with `script`, then fails on any request the script
    /// did not expect.
    pub fn run<F, Fut>(mut self, md: ModelDeployment, script: F) -> Scripted
    where
        F: FnOnce(ApiServerVerifier) -> Fut + Send + 'static,
        Fut: Future<Output = ApiServerVerifier> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.reconciled = Some(rx);
        self.md = serde_json::to_value(&md).expect("JSON");
        let task = tokio::spawn(async move {
            let mut api = script(self).await;
            let reconciled = api.reconciled.as_mut().expect("set by run");
            tokio::select! {
                biased;
                Some((req, _)) = api.handle.next_request() => {
                    panic!("unexpected request after the last expected one: {} {}", req.method(), req.uri())
                }
                _ = reconciled => {}
            }
        });
        Scripted { md, task, reconciled: tx }
    }

    async fn next(&mut self, method: &Method, path: &str) -> (Request<Body>, SendResponse<Response<Body>>) {
        let reconciled = self.reconciled.as_mut().expect("set by run");
        let (req, send) = tokio::select! {
            biased;
            Some(exchange) = self.handle.next_request() => exchange,
            _ = reconciled => panic!("the reconcile returned without asking for {method} {path}"),
        };
        assert_eq!(
            format!("{} {}", req.method(), req.uri().path()),
            format!("{method} {path}"),
            "the reconcile asked for something other than the next expected request"
        );
        (req, send)
    }

    /// GET of an object that does not exist: 404 with a Status body, as the API server answers.
    pub async fn get_missing(&mut self, path: &str) {
        let (req, send) = self.next(&Method::GET, path).await;
        assert_eq!(query(&req), BTreeMap::new(), "query of GET {path}");
        send.send_response(status(404, "NotFound", &format!("{path} not found")));
    }

    /// GET of an object that exists.
    pub async fn get(&mut self, path: &str, object: Value) {
        let (req, send) = self.next(&Method::GET, path).await;
        assert_eq!(query(&req), BTreeMap::new(), "query of GET {path}");
        send.send_response(ok(&object));
    }

    /// LIST of `path` with a label selector, answered with `items`.
    pub async fn list(&mut self, path: &str, selector: &str, items: Vec<Value>) {
        let (req, send) = self.next(&Method::GET, path).await;
        let wanted = selector.replace('/', "%2F").replace('=', "%3D").replace(',', "%2C");
        assert_eq!(query(&req).get("labelSelector"), Some(&wanted), "selector of LIST {path}");
        send.send_response(ok(&json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items})));
    }

    /// A request that fails on the server's side with `code`.
    pub async fn fail(&mut self, method: Method, path: &str, code: u16) {
        let (_, send) = self.next(&method, path).await;
        send.send_response(status(code, "InternalError", "etcdserver: request timed out"));
    }

    /// Server-side apply with the operator's field manager, forced; answered by echoing the object.
    /// Returns the applied object.
    pub async fn apply(&mut self, path: &str) -> Value {
        self.apply_answering(path, Value::clone).await
    }

    /// Server-side apply, answered with `answer(applied)`; returns the applied object.
    pub async fn apply_answering(&mut self, path: &str, answer: impl FnOnce(&Value) -> Value) -> Value {
        let (req, send) = self.next(&Method::PATCH, path).await;
        assert_eq!(
            query(&req),
            BTreeMap::from([
                ("fieldManager".into(), "kubeinfer-operator".into()),
                ("force".into(), "true".into())
            ]),
            "query of PATCH {path}"
        );
        assert_eq!(req.headers()["content-type"], "application/apply-patch+yaml", "PATCH {path}");
        let applied = body(req).await;
        send.send_response(ok(&answer(&applied)));
        applied
    }

    /// DELETE of a child that is no longer wanted, in the background and only if its uid is still `uid`.
    pub async fn delete(&mut self, path: &str, uid: &str) {
        let (req, send) = self.next(&Method::DELETE, path).await;
        let params = body(req).await;
        assert_eq!(params["propagationPolicy"], "Background", "DELETE {path}");
        assert_eq!(params["preconditions"]["uid"], uid, "DELETE {path}");
        send.send_response(ok(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})));
    }

    /// Server-side apply of the ModelDeployment's status, answered with the whole object holding the
    /// applied status, as the API server does. Returns the applied status object.
    pub async fn apply_status(&mut self) -> Value {
        let mut object = self.md.clone();
        let path = format!(
            "/apis/kubeinfer.io/v1alpha1/namespaces/ml/modeldeployments/{}/status",
            object["metadata"]["name"].as_str().expect("a name")
        );
        self.apply_answering(&path, |applied| {
            object["status"] = applied["status"].clone();
            object
        })
        .await
    }

    /// An Event published about the ModelDeployment; returns it.
    pub async fn event(&mut self) -> Value {
        let (req, send) = self.next(&Method::POST, "/apis/events.k8s.io/v1/namespaces/ml/events").await;
        assert_eq!(query(&req), BTreeMap::new(), "query of the event POST");
        let event = body(req).await;
        assert_eq!(event["regarding"]["kind"], "ModelDeployment");
        assert_eq!(event["regarding"]["name"], "digits");
        assert_eq!(event["reportingController"], "kubeinfer-operator");
        send.send_response(ok(&event));
        event
    }
}

impl Scripted {
    /// Reconciles the ModelDeployment against the script. The script's failures are reported first, since
    /// a script that stopped answering makes the reconcile fail too.
    pub async fn reconcile(self, ctx: Arc<Context>) -> Result<Action, Error> {
        let result = tokio::time::timeout(TIMEOUT, controller::reconcile(Arc::new(self.md), ctx)).await;
        let _ = self.reconciled.send(());
        match tokio::time::timeout(TIMEOUT, self.task).await {
            Err(_) => panic!("the API server script did not finish within {TIMEOUT:?}"),
            Ok(Err(e)) if e.is_panic() => {
                match &result {
                    Ok(returned) => eprintln!("the reconcile returned {returned:?}"),
                    Err(_) => eprintln!("the reconcile did not return within {TIMEOUT:?}"),
                }
                std::panic::resume_unwind(e.into_panic())
            }
            Ok(Err(e)) => panic!("the API server script failed: {e}"),
            Ok(Ok(())) => {}
        }
        result.unwrap_or_else(|_| panic!("the reconcile did not return within {TIMEOUT:?}"))
    }
}

fn query(req: &Request<Body>) -> BTreeMap<String, String> {
    let pairs = req.uri().query().unwrap_or_default().split('&').filter(|p| !p.is_empty());
    pairs.map(|p| p.split_once('=').unwrap_or((p, ""))).map(|(k, v)| (k.into(), v.into())).collect()
}

async fn body(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("a request body");
    serde_json::from_slice(&bytes).expect("a JSON request body")
}

fn ok(object: &Value) -> Response<Body> {
    Response::new(Body::from(serde_json::to_vec(object).expect("JSON")))
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                        "code": code, "message": message});
    let body = Body::from(serde_json::to_vec(&status).expect("JSON"));
    Response::builder().status(code).body(body).expect("a valid response")
}
