//! `spawn_app()`: the gateway on a free port over a test world of its own (the kit's
//! [`World`], without streams), and a typed client for it.

use std::net::SocketAddr;
use std::sync::Once;

use orderflow_domain::OrderCommand;
use orderflow_gateway::GatewayState;
use orderflow_store::{CommandMetadata, OrderStore};
use orderflow_testkit::{OrderFixture, World};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A running gateway and what a test needs around it. Stops the gateway when dropped. Derefs
/// to its [`World`]: `app.db`, `app.number_events()`, `app.project()`, ...
pub(crate) struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub client: reqwest::Client,
    pub world: World,
    /// The gateway's store (the world's, unless `adjust` gave the gateway another).
    pub store: OrderStore,
    pub shutdown: CancellationToken,
    pub server: Option<JoinHandle<()>>,
}

impl std::ops::Deref for TestApp {
    type Target = World;

    fn deref(&self) -> &World {
        &self.world
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

static TRACING: Once = Once::new();

/// Logs of the tests go to the output when `TEST_LOG` is set (to a filter such as `debug`).
fn init_tracing() {
    TRACING.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Starts the gateway on 127.0.0.1, port 0, over a fresh database.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|state| state).await
}

/// As [`spawn_app`], with the state changed by `adjust` (a NATS client, ...).
pub(crate) async fn spawn_app_with(adjust: impl FnOnce(GatewayState) -> GatewayState) -> TestApp {
    init_tracing();
    let world = World::without_nats().await;
    let state = adjust(GatewayState::new(world.db.pool.clone()));
    let store = state.orders.clone();
    let shutdown = CancellationToken::new();
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let (bound, server) = orderflow_gateway::serve(state, addr, shutdown.clone())
        .await
        .expect("the gateway binds a free port");
    TestApp {
        address: format!("http://{bound}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client"),
        world,
        store,
        shutdown,
        server: Some(server),
    }
}

/// A valid body for `POST /v1/orders`.
pub(crate) fn valid_order() -> Value {
    json!({
        "customer_id": "c-42",
        "customer_email": "ada@example.com",
        "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1299},
                  {"sku": "SKU-2", "quantity": 1, "unit_price": 500}],
        "shipping_address": {"name": "Ada L", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"}
    })
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Any request, for the odd cases.
    pub(crate) async fn request(&self, method: Method, path: &str) -> Response {
        self.client
            .request(method, self.url(path))
            .send()
            .await
            .expect("the gateway answers")
    }

    pub(crate) async fn post_order(&self, body: &Value) -> Response {
        self.post_raw("/v1/orders", body.to_string(), &[]).await
    }

    pub(crate) async fn post_order_with_key(&self, body: &Value, key: &str) -> Response {
        self.post_raw("/v1/orders", body.to_string(), &[("Idempotency-Key", key)])
            .await
    }

    /// A POST with a raw body and extra headers.
    pub(crate) async fn post_raw(
        &self,
        path: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the gateway answers")
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).await
    }

    pub(crate) async fn get_order(&self, id: &str) -> Response {
        self.get(&format!("/v1/orders/{id}")).await
    }

    pub(crate) async fn cancel_order(&self, id: &str, body: &Value) -> Response {
        self.post_raw(&format!("/v1/orders/{id}/cancel"), body.to_string(), &[])
            .await
    }

    pub(crate) async fn order_events(&self, id: &str) -> Response {
        self.get(&format!("/v1/orders/{id}/events")).await
    }

    pub(crate) async fn order_state(&self, id: &str, query: &str) -> Response {
        self.get(&format!("/v1/orders/{id}/state{query}")).await
    }

    /// Places a valid order and returns its id and body.
    pub(crate) async fn place_order(&self) -> (Uuid, Value) {
        let response = self.post_order(&valid_order()).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.expect("an order");
        let id = order["id"]
            .as_str()
            .expect("an id")
            .parse()
            .expect("a UUID");
        (id, order)
    }

    /// Drives order `id` to `shipped` through the store, as the workers would.
    pub(crate) async fn ship(&self, id: Uuid) {
        let metadata = CommandMetadata::from_request("test-driver");
        let commands = [
            OrderCommand::ConfirmOrder {
                reservation_id: Uuid::now_v7(),
            },
            OrderCommand::StartShipment {
                shipment_id: Uuid::now_v7(),
                carrier: "DHL".into(),
                tracking_number: "TRACK-1".into(),
            },
        ];
        for command in commands {
            self.store
                .execute(id, command, &metadata)
                .await
                .expect("the store accepts the command");
        }
    }

    /// Rows in the events table of this test's database.
    pub(crate) async fn event_count(&self) -> i64 {
        self.world.stored_events().await
    }
}

/// Asserts `response` is a problem with `status` and returns its body.
pub(crate) async fn problem(response: Response, status: StatusCode) -> Value {
    let got = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.text().await.expect("a body");
    assert_eq!(got, status, "unexpected status; body: {body}");
    assert_eq!(content_type, "application/problem+json", "body: {body}");
    let problem: Value = serde_json::from_str(&body).expect("problem+json is JSON");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    for member in ["type", "title", "detail"] {
        assert!(
            problem[member].as_str().is_some_and(|s| !s.is_empty()),
            "problem without {member}: {problem}"
        );
    }
    problem
}

/// The `field`s of a problem's `errors[]`, sorted.
pub(crate) fn error_fields(problem: &Value) -> Vec<String> {
    let mut fields: Vec<String> = problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("problem without errors[]: {problem}"))
        .iter()
        .map(|e| {
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "error without a message: {e}"
            );
            e["field"].as_str().expect("a field").to_string()
        })
        .collect();
    fields.sort();
    fields
}

/// Sends raw bytes over one connection and returns everything the gateway answers until it
/// closes the connection (send `Connection: close`), for requests reqwest cannot make.
pub(crate) async fn raw_http(app: &TestApp, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stream.read_to_end(&mut answer),
    )
    .await;
    assert!(
        read.is_ok(),
        "the gateway did not close the connection within 60 s"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// The admin token of apps started with [`spawn_admin_app`].
pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The gateway with the admin routes on (token [`ADMIN_TOKEN`]), and `adjust` for more.
pub(crate) async fn spawn_admin_app(adjust: impl FnOnce(GatewayState) -> GatewayState) -> TestApp {
    spawn_app_with(|state| adjust(state.with_admin_token(ADMIN_TOKEN))).await
}

impl TestApp {
    /// A request with `Authorization: Bearer <token>` (no header for `None`) and a JSON body
    /// when given.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        request.send().await.expect("the gateway answers")
    }

    /// A request with a raw body, sent with `content_type` (no `Content-Type` header for
    /// `None`) and the admin token when `token` is given.
    pub(crate) async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &str,
        token: Option<&str>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .body(body.to_string());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("the gateway answers")
    }

    /// A GET with the admin token.
    pub(crate) async fn admin_get(&self, path: &str) -> Response {
        self.send(Method::GET, path, Some(ADMIN_TOKEN), None).await
    }

    /// A POST with the admin token and a JSON body.
    pub(crate) async fn admin_post(&self, path: &str, body: &Value) -> Response {
        self.send(Method::POST, path, Some(ADMIN_TOKEN), Some(body))
            .await
    }

    pub(crate) async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.send(Method::PUT, path, None, Some(body)).await
    }

    /// Places an order through the store for customer `customer` at `placed_at` (1 line of
    /// `sku`), as `POST /v1/orders` would. Returns its id.
    pub(crate) async fn place_at(
        &self,
        customer: &str,
        sku: &str,
        placed_at: chrono::DateTime<chrono::Utc>,
    ) -> Uuid {
        let order = OrderFixture::new()
            .customer(customer)
            .line(sku, 2)
            .placed_at(placed_at);
        let id = order.order_id();
        self.store
            .execute(id, order.command(), &CommandMetadata::from_request("test"))
            .await
            .expect("the store places it");
        id
    }

    /// Runs `command` on order `id` through the store.
    pub(crate) async fn command(&self, id: Uuid, command: OrderCommand) {
        self.store
            .execute(id, command, &CommandMetadata::from_request("test-driver"))
            .await
            .expect("the store accepts the command");
    }
}
