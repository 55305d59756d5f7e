//! Effects outside the database: the http carrier and the webhook and smtp channels against
//! small local servers. Each call carries the idempotency key derived from the event; 5xx and
//! timeouts are retried, 4xx is final.

use std::time::Duration;

use orderflow_testkit::fixture::{address, order_line};
use orderflow_testkit::http::{Answer, Recorder};
use orderflow_workers::notifications::{
    Channel, Notification, SendError, SmtpChannel, WebhookChannel,
};
use orderflow_workers::shipments::{Carrier, CarrierError, HttpCarrier, ShipmentRequest};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

fn request() -> ShipmentRequest {
    ShipmentRequest {
        shipment_id: Uuid::new_v4(),
        order_id: Uuid::new_v4(),
        address: address(),
        lines: vec![order_line("SKU-1", 1, 100)],
    }
}

fn notification() -> Notification {
    Notification {
        notification_id: Uuid::new_v4(),
        order_id: Uuid::new_v4(),
        event_type: "OrderPlaced".into(),
        to: "ada@example.com".into(),
        subject: "We received your order".into(),
        text: "Thank you.".into(),
    }
}

#[tokio::test]
async fn the_http_carrier_retries_5xx_and_timeouts_with_one_idempotency_key() {
    let Recorder { url, keys } = Recorder::scripted(
        vec![Answer::Status(503), Answer::Hang, Answer::Status(200)],
        "TN-",
    )
    .await;
    // The hanging answer never comes: only the carrier's own timeout ends that attempt. The
    // other answers come long before it, however busy the machine.
    let carrier = HttpCarrier::new("acme", &url, Duration::from_secs(5), 3).unwrap();
    let request = request();
    let booking = carrier.book(&request).await.unwrap();
    let id = request.shipment_id.to_string();
    assert_eq!(booking.tracking_number, format!("TN-{id}"));
    assert_eq!(*keys.lock().unwrap(), [id.clone(), id.clone(), id]);
}

#[tokio::test]
async fn the_http_carrier_gives_up_on_4xx_and_reports_exhausted_retries_as_transient() {
    let Recorder { url, keys } = Recorder::scripted(vec![Answer::Status(422)], "TN-").await;
    let carrier = HttpCarrier::new("acme", &url, Duration::from_secs(30), 3).unwrap();
    assert!(matches!(
        carrier.book(&request()).await,
        Err(CarrierError::Refused(_))
    ));
    assert_eq!(keys.lock().unwrap().len(), 1, "a refusal is not retried");

    let Recorder { url, keys } = Recorder::scripted(vec![Answer::Status(500); 3], "TN-").await;
    let carrier = HttpCarrier::new("acme", &url, Duration::from_secs(30), 3).unwrap();
    assert!(matches!(
        carrier.book(&request()).await,
        Err(CarrierError::Transient(_))
    ));
    assert_eq!(keys.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_webhook_posts_with_the_notification_id_as_key_and_classifies_failures() {
    let Recorder { url, keys } = Recorder::scripted(vec![Answer::Status(502)], "TN-").await;
    let webhook = WebhookChannel::new(&url, Duration::from_secs(30), 3).unwrap();
    let n = notification();
    webhook.send(&n).await.unwrap();
    let id = n.notification_id.to_string();
    assert_eq!(*keys.lock().unwrap(), [id.clone(), id]);

    let Recorder { url, .. } = Recorder::scripted(vec![Answer::Status(404)], "TN-").await;
    let webhook = WebhookChannel::new(&url, Duration::from_secs(30), 3).unwrap();
    assert!(matches!(
        webhook.send(&n).await,
        Err(SendError::Permanent(_))
    ));

    let unreachable =
        WebhookChannel::new("http://127.0.0.1:9/", Duration::from_millis(300), 2).unwrap();
    assert!(matches!(
        unreachable.send(&n).await,
        Err(SendError::Transient(_))
    ));
}

/// A minimal SMTP server that accepts one message and hands back its DATA.
async fn smtp_server() -> (String, tokio::sync::oneshot::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut reader = BufReader::new(socket);
        reader
            .get_mut()
            .write_all(b"220 test ESMTP\r\n")
            .await
            .unwrap();
        let mut data = String::new();
        let mut in_data = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                break;
            }
            if in_data {
                if line == ".\r\n" {
                    in_data = false;
                    reader.get_mut().write_all(b"250 queued\r\n").await.unwrap();
                } else {
                    data.push_str(&line);
                }
                continue;
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-test\r\n250 OK\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go on\r\n"
                }
                "QUIT" => {
                    reader.get_mut().write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"250 OK\r\n",
            };
            reader.get_mut().write_all(reply).await.unwrap();
        }
        let _ = tx.send(data);
    });
    (url, rx)
}

#[tokio::test]
async fn the_smtp_channel_sends_an_email_whose_message_id_is_the_notification_id() {
    let (url, received) = smtp_server().await;
    let smtp = SmtpChannel::new(&url, "orders@orderflow.local", Duration::from_secs(30)).unwrap();
    let n = notification();
    smtp.send(&n).await.unwrap();
    let data = received.await.unwrap();
    assert!(
        data.contains(&format!("Message-ID: <{}@orderflow>", n.notification_id)),
        "{data}"
    );
    assert!(data.contains("Subject: We received your order"), "{data}");
    assert!(data.contains("To: ada@example.com"), "{data}");
    assert!(
        SmtpChannel::new("smtps://mail.example.com", "a@b.cd", Duration::from_secs(1)).is_ok(),
        "TLS from the first byte is supported"
    );
    assert!(SmtpChannel::new("http://mail.example.com", "a@b.cd", Duration::from_secs(1)).is_err());
}

#[tokio::test]
async fn the_smtp_channel_refuses_to_send_in_clear_when_tls_is_required() {
    let (url, _received) = smtp_server().await;
    let smtp = SmtpChannel::new(
        &format!("{url}?tls=required"),
        "orders@orderflow.local",
        Duration::from_secs(30),
    )
    .unwrap();
    let sent = smtp.send(&notification()).await;
    assert!(
        sent.is_err(),
        "a server without STARTTLS must not get the mail"
    );
}
