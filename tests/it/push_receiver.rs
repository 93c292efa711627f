//! The loopback push receiver checked against the real `web-push` sender: what it delivers is
//! exactly what was encrypted, and what a push service would refuse, it refuses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use p256::ecdsa::SigningKey;
use serde_json::Value;
use web_push::{
    ContentEncoding, HyperWebPushClient, SubscriptionInfo, Urgency, VapidSignatureBuilder,
    WebPushClient as _, WebPushError, WebPushMessage, WebPushMessageBuilder,
};

use crate::push_receiver_support::PushReceiver;

const WAIT: Duration = Duration::from_secs(5);
const CONTACT: &str = "mailto:duty-office@example.org";

/// An application server: a VAPID key pair, as our server will hold one.
struct Sender {
    private_key: String,
    client: HyperWebPushClient,
}

impl Sender {
    fn new() -> Sender {
        let key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        Sender {
            private_key: URL_SAFE_NO_PAD.encode(key.to_bytes()),
            client: HyperWebPushClient::new(),
        }
    }

    /// The `applicationServerKey` a browser subscribes with.
    fn public_key(&self) -> String {
        let builder = VapidSignatureBuilder::from_base64_no_sub(&self.private_key).unwrap();
        URL_SAFE_NO_PAD.encode(builder.get_public_key())
    }

    /// Encrypts and signs `payload` for `subscription`; `claims` are extra VAPID claims.
    fn message(
        &self,
        subscription: &Value,
        payload: &[u8],
        claims: &[(&str, Value)],
    ) -> WebPushMessage {
        let info: SubscriptionInfo = serde_json::from_value(subscription.clone()).unwrap();
        let mut signature = VapidSignatureBuilder::from_base64_no_sub(&self.private_key)
            .unwrap()
            .add_sub_info(&info);
        signature.add_claim("sub", CONTACT);
        for (name, value) in claims {
            signature.add_claim(name, value.clone());
        }
        let mut message = WebPushMessageBuilder::new(&info);
        message.set_payload(ContentEncoding::Aes128Gcm, payload);
        message.set_ttl(600);
        message.set_vapid_signature(signature.build().unwrap());
        message.build().unwrap()
    }

    async fn send(&self, subscription: &Value, payload: &[u8]) -> Result<(), WebPushError> {
        self.client
            .send(self.message(subscription, payload, &[]))
            .await
    }
}

/// Sends a web-push request by hand, after `edit` has changed its headers or body.
async fn send_edited(
    message: WebPushMessage,
    edit: impl FnOnce(&mut Vec<(String, String)>, &mut Vec<u8>),
) -> reqwest::StatusCode {
    let request = web_push::request_builder::build_request::<Vec<u8>>(message);
    let mut headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    let mut body = request.body().clone();
    edit(&mut headers, &mut body);
    let mut post = reqwest::Client::new().post(request.uri().to_string());
    for (name, value) in headers {
        if name != "content-length" {
            post = post.header(name, value);
        }
    }
    post.body(body).send().await.unwrap().status()
}

fn error_code(error: &WebPushError) -> Option<u16> {
    match error {
        WebPushError::Unauthorized(info)
        | WebPushError::BadRequest(info)
        | WebPushError::EndpointNotValid(info)
        | WebPushError::EndpointNotFound(info)
        | WebPushError::Other(info)
        | WebPushError::ServerError { info, .. } => Some(info.code),
        _ => None,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn delivers_the_decrypted_payload_with_urgency_ttl_and_topic() {
    let receiver = PushReceiver::start().await.unwrap();
    let sender = Sender::new();
    receiver.expect_vapid_key(&sender.public_key());
    let subscription = receiver.subscribe("duty-phone");
    assert_eq!(subscription["expirationTime"], Value::Null);
    assert_eq!(
        subscription["endpoint"],
        format!("http://{}/push/duty-phone", receiver.address())
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(subscription["keys"]["p256dh"].as_str().unwrap())
            .unwrap()
            .len(),
        65
    );

    let payload = br#"{"incident":"0190a7c2","level":"red"}"#;
    let info: SubscriptionInfo = serde_json::from_value(subscription.clone()).unwrap();
    let mut message = WebPushMessageBuilder::new(&info);
    message.set_payload(ContentEncoding::Aes128Gcm, payload);
    message.set_ttl(3600);
    message.set_urgency(Urgency::High);
    message.set_topic("incident-0190a7c2".into());
    let mut signature = VapidSignatureBuilder::from_base64_no_sub(&sender.private_key)
        .unwrap()
        .add_sub_info(&info);
    signature.add_claim("sub", CONTACT);
    message.set_vapid_signature(signature.build().unwrap());
    sender.client.send(message.build().unwrap()).await.unwrap();

    let delivery = receiver.next_delivery(WAIT).await.expect("a delivery");
    assert_eq!(delivery.name, "duty-phone");
    assert_eq!(delivery.payload, payload);
    assert_eq!(delivery.json()["level"], "red");
    assert_eq!(delivery.urgency.as_deref(), Some("high"));
    assert_eq!(delivery.ttl, 3600);
    assert_eq!(delivery.topic.as_deref(), Some("incident-0190a7c2"));
    assert_eq!(delivery.vapid_sub, CONTACT);
    assert_eq!(receiver.attempts("duty-phone"), 1);
    assert_eq!(receiver.deliveries().len(), 1);
    assert!(
        receiver.rejections().is_empty(),
        "{:?}",
        receiver.rejections()
    );
    receiver.expect_none(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn refuses_a_vapid_key_other_than_the_pinned_one() {
    let receiver = PushReceiver::start().await.unwrap();
    receiver.expect_vapid_key(&Sender::new().public_key());
    let subscription = receiver.subscribe("phone");

    let error = Sender::new()
        .send(&subscription, b"hello")
        .await
        .unwrap_err();

    assert_eq!(error_code(&error), Some(403), "{error}");
    assert!(receiver.deliveries().is_empty());
    let rejections = receiver.rejections();
    assert_eq!(rejections.len(), 1);
    assert!(
        rejections[0].reason.contains("applicationServerKey"),
        "{rejections:?}"
    );
}

#[tokio::test]
async fn checks_vapid_tokens() {
    let receiver = PushReceiver::start().await.unwrap();
    let sender = Sender::new();
    let subscription = receiver.subscribe("phone");
    let refused = [
        (
            "aud",
            Value::from("https://push.example.net"),
            "InvalidAudience",
        ),
        ("exp", Value::from(now() + 2 * 24 * 3600), "more than 24 h"),
        ("exp", Value::from(now() - 10), "ExpiredSignature"),
        (
            "sub",
            Value::from("duty-office"),
            "neither mailto: nor https:",
        ),
    ];
    for (name, value, reason) in refused {
        let message = sender.message(&subscription, b"hello", &[(name, value.clone())]);
        let error = sender.client.send(message).await.unwrap_err();
        assert!(
            matches!(error, WebPushError::Unauthorized(_)),
            "{name}={value}: {error}"
        );
        let rejection = receiver.rejections().pop().unwrap();
        assert!(
            rejection.reason.contains(reason),
            "{name}={value}: {rejection:?}"
        );
    }

    // A token presented with another key than the one that signed it.
    let other_key = Sender::new().public_key();
    let status = send_edited(
        sender.message(&subscription, b"hello", &[]),
        |headers, _| {
            for (name, value) in headers.iter_mut() {
                if name == "authorization" {
                    let (token, _) = value.split_once(", k=").unwrap();
                    *value = format!("{token}, k={other_key}");
                }
            }
        },
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        receiver
            .rejections()
            .pop()
            .unwrap()
            .reason
            .contains("InvalidSignature")
    );

    // No VAPID at all.
    let info: SubscriptionInfo = serde_json::from_value(subscription.clone()).unwrap();
    let mut message = WebPushMessageBuilder::new(&info);
    message.set_payload(ContentEncoding::Aes128Gcm, b"hello");
    let error = sender
        .client
        .send(message.build().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, WebPushError::Unauthorized(_)), "{error}");

    assert!(receiver.deliveries().is_empty());
    assert_eq!(receiver.rejections().len(), 6);

    // The RFC 8292 audience, with the port, is accepted as well as web-push's port-less one.
    let origin = format!("http://{}", receiver.address());
    let message = sender.message(&subscription, b"hello", &[("aud", origin.into())]);
    sender.client.send(message).await.unwrap();
    assert_eq!(receiver.attempts("phone"), 7);
}

#[tokio::test]
async fn refuses_a_tampered_body_and_missing_headers() {
    let receiver = PushReceiver::start().await.unwrap();
    let sender = Sender::new();
    let subscription = receiver.subscribe("phone");
    let message = || sender.message(&subscription, b"call the duty officer", &[]);

    let tampered = send_edited(message(), |_, body| {
        let last = body.len() - 1;
        body[last] ^= 1;
    })
    .await;
    assert_eq!(tampered, 400);
    let without_ttl = send_edited(message(), |headers, _| {
        headers.retain(|(name, _)| name != "ttl")
    })
    .await;
    assert_eq!(without_ttl, 400);
    let old_coding = send_edited(message(), |headers, _| {
        for (name, value) in headers.iter_mut() {
            if name == "content-encoding" {
                *value = "aesgcm".into();
            }
        }
    })
    .await;
    assert_eq!(old_coding, 400);

    assert!(receiver.deliveries().is_empty());
    let reasons: Vec<String> = receiver
        .rejections()
        .into_iter()
        .map(|rejection| rejection.reason)
        .collect();
    assert_eq!(reasons.len(), 3);
    assert!(reasons[0].contains("decrypt"), "{reasons:?}");
    assert!(reasons[1].contains("TTL"), "{reasons:?}");
    assert!(reasons[2].contains("Content-Encoding"), "{reasons:?}");
}

#[tokio::test]
async fn accepts_the_draft_webpush_authorization_form() {
    let receiver = PushReceiver::start().await.unwrap();
    let sender = Sender::new();
    receiver.expect_vapid_key(&sender.public_key());
    let subscription = receiver.subscribe("old-phone");

    let status = send_edited(
        sender.message(&subscription, b"hello", &[]),
        |headers, _| {
            let (_, authorization) = headers
                .iter()
                .find(|(name, _)| name == "authorization")
                .unwrap();
            let parameters = authorization.strip_prefix("vapid ").unwrap().to_owned();
            let (token, key) = parameters.split_once(", ").unwrap();
            let (token, key) = (
                token.strip_prefix("t=").unwrap(),
                key.strip_prefix("k=").unwrap(),
            );
            let replaced = [
                ("authorization".to_owned(), format!("WebPush {token}")),
                ("crypto-key".to_owned(), format!("p256ecdsa={key}")),
            ];
            headers.retain(|(name, _)| name != "authorization");
            headers.extend(replaced);
        },
    )
    .await;

    assert_eq!(status, 201, "{:?}", receiver.rejections());
    let delivery = receiver.next_delivery(WAIT).await.expect("a delivery");
    assert_eq!(delivery.payload, b"hello");
}

#[tokio::test]
async fn scripted_statuses_reach_the_sender_as_errors() {
    let receiver = PushReceiver::start().await.unwrap();
    let sender = Sender::new();
    let subscription = receiver.subscribe("phone");
    receiver.respond_with("phone", &[429, 500, 410]);

    // web-push 0.11 has no variant for 429 and keeps Retry-After only for 5xx responses.
    let too_many = sender.send(&subscription, b"1").await.unwrap_err();
    assert!(
        matches!(&too_many, WebPushError::Other(info) if info.code == 429),
        "{too_many}"
    );
    let server_error = sender.send(&subscription, b"2").await.unwrap_err();
    assert!(
        matches!(server_error, WebPushError::ServerError { .. }),
        "{server_error}"
    );
    let gone = sender.send(&subscription, b"3").await.unwrap_err();
    assert!(matches!(gone, WebPushError::EndpointNotValid(_)), "{gone}");
    sender.send(&subscription, b"4").await.unwrap();

    let mut unknown = subscription.clone();
    unknown["endpoint"] = format!("http://{}/push/nobody", receiver.address()).into();
    let not_found = sender.send(&unknown, b"5").await.unwrap_err();
    assert!(
        matches!(not_found, WebPushError::EndpointNotFound(_)),
        "{not_found}"
    );

    assert_eq!(receiver.attempts("phone"), 4);
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].payload, b"4");
}

#[tokio::test]
async fn retry_after_is_sent_with_429() {
    let receiver = PushReceiver::start().await.unwrap();
    let sender = Sender::new();
    let subscription = receiver.subscribe("phone");
    receiver.respond_with("phone", &[429]);

    let response = reqwest::Client::new()
        .post(subscription["endpoint"].as_str().unwrap())
        .body(
            sender
                .message(&subscription, b"x", &[])
                .payload
                .unwrap()
                .content,
        )
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(receiver.attempts("phone"), 1);
}
