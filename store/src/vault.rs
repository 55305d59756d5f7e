//! Crypto-shredding of personal data: the [`Vault`] is the one component that seals a
//! customer's e-mail address and shipping address into an `OrderPlaced` event before it is
//! stored, and opens them again for the readers that need them.
//!
//! Each customer has a data key of their own (AES-256-GCM, in `customer_keys`), stored wrapped
//! under the [`MasterKey`], which lives only in the processes' memory. An `OrderPlaced` is
//! stored with its personal fields replaced by a `personal` object: the id of the data key
//! and the AES-256-GCM ciphertext of `{"customer_email": ..., "shipping_address": ...}`,
//! bound to the order's id. The relay publishes that payload as it is, so the stream carries
//! the same ciphertext.
//!
//! [`Vault::forget`] deletes the customer's data key: from then on every copy of their sealed
//! fields (in the events table, the stream, any backup) is unreadable, and opening shows them
//! as [`ERASED`], never as an error. Events stored before sealing existed (plaintext) still
//! decode as they are; forgetting rewrites their personal fields to [`ERASED`].
//!
//! The master key is process-wide: the binary installs it once at start
//! ([`install_master_key`]); every [`Vault::new`] uses it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use orderflow_domain::OrderEvent;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::log::EventEnvelope;

/// What a personal field shows once its key is gone: every text field of the e-mail address
/// and of the shipping address reads this.
pub const ERASED: &str = "[erased]";

/// The field of a sealed `OrderPlaced` body that holds the ciphertext.
pub const SEALED_FIELD: &str = "personal";

const NONCE_LEN: usize = 12;

/// Why the vault could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No master key was installed in this process.
    #[error(
        "no master key: set ORDERFLOW_MASTER_KEY (64 hex digits) or ORDERFLOW_MASTER_KEY_FILE \
         (a file holding them); run from the checkout, a command finds the development key \
         scripts/run makes in .orderflow/master.key"
    )]
    NoMasterKey,
    /// The master key given is not 32 bytes in hex.
    #[error("the master key must be 32 bytes, hex-encoded (64 hex digits)")]
    BadMasterKey,
    /// A data key did not unwrap: the master key is not the one it was wrapped with.
    #[error("data key {0} does not unwrap with this master key")]
    WrongMasterKey(Uuid),
    /// Another master key was installed already.
    #[error("another master key is installed in this process already")]
    AlreadyInstalled,
    /// Encryption failed or a body could not be (de)serialized.
    #[error("sealing failed: {0}")]
    Seal(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The key that wraps every customer's data key: 32 bytes, zeroed when dropped, never shown.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// The key from 64 hex digits (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`VaultError::BadMasterKey`] when it is not 32 bytes of hex.
    pub fn from_hex(text: &str) -> Result<Self, VaultError> {
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| VaultError::BadMasterKey)?);
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::BadMasterKey)?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// A new random key.
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut array = [0u8; 32];
        array.copy_from_slice(&key);
        Self(Zeroizing::new(array))
    }

    /// The key as 64 hex digits, for writing it to a key file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.0))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&*self.0))
    }

    /// Wraps `data_key` for `key_id`: nonce || ciphertext.
    fn wrap(&self, key_id: Uuid, data_key: &[u8]) -> Result<Vec<u8>, VaultError> {
        encrypt(&self.cipher(), key_id.as_bytes(), data_key)
    }

    fn unwrap_key(&self, key_id: Uuid, wrapped: &[u8]) -> Result<Aes256Gcm, VaultError> {
        let data_key = Zeroizing::new(
            decrypt(&self.cipher(), key_id.as_bytes(), wrapped)
                .ok_or(VaultError::WrongMasterKey(key_id))?,
        );
        if data_key.len() != 32 {
            return Err(VaultError::WrongMasterKey(key_id));
        }
        Ok(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key)))
    }
}

fn encrypt(cipher: &Aes256Gcm, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, VaultError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: plain, aad })
        .map_err(|_| VaultError::Seal("encryption failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn decrypt(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
        .ok()
}

static MASTER_KEY: OnceLock<MasterKey> = OnceLock::new();

/// Installs the process's master key; every [`Vault::new`] from then on uses it. Installing
/// the same key again is allowed.
///
/// # Errors
/// [`VaultError::AlreadyInstalled`] when another key was installed before.
pub fn install_master_key(key: MasterKey) -> Result<(), VaultError> {
    let installed = MASTER_KEY.get_or_init(|| key.clone());
    if *installed.0 == *key.0 {
        Ok(())
    } else {
        Err(VaultError::AlreadyInstalled)
    }
}

/// What [`Vault::forget`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Forgotten {
    /// The customer forgotten.
    pub customer_id: String,
    /// Data keys deleted (0 when the customer had none, or was forgotten before).
    pub keys_deleted: u64,
    /// Orders of the customer whose personal data is now erased (whenever it was erased).
    pub orders: u64,
    /// Of those, the orders whose personal data this forgetting erased: sealed under a key
    /// it deleted, or stored in plain text before sealing existed. 0 when everything was
    /// erased before.
    pub erased_now: u64,
    /// When the customer was first forgotten, if that was before this forgetting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forgotten_before: Option<chrono::DateTime<chrono::Utc>>,
    /// What happened, in one sentence (the CLI prints it).
    pub detail: String,
}

impl Forgotten {
    /// The sentence of [`Forgotten::detail`].
    fn describe(&self) -> String {
        let orders = |n: u64| format!("{n} order{}", if n == 1 { "" } else { "s" });
        let before = self
            .forgotten_before
            .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        match (&before, self.orders, self.keys_deleted, self.erased_now) {
            (None, 0, 0, _) => format!(
                "customer {} is not known here (no order, no data key): nothing to erase; the \
                 request is recorded",
                self.customer_id
            ),
            (Some(at), _, 0, 0) => format!(
                "customer {} was already forgotten on {at}: nothing left to erase (the personal \
                 data of {} reads as erased)",
                self.customer_id,
                orders(self.orders)
            ),
            _ => format!(
                "customer {} forgotten: {} data key{} deleted, personal data of {} erased{}",
                self.customer_id,
                self.keys_deleted,
                if self.keys_deleted == 1 { "" } else { "s" },
                orders(self.erased_now),
                before.map_or_else(String::new, |at| format!(
                    " (forgotten before on {at}; {} erased then)",
                    orders(self.orders.saturating_sub(self.erased_now))
                )),
            ),
        }
    }
}

/// Seals and opens personal data, forgets customers. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    pool: PgPool,
    master: Option<Arc<MasterKey>>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("master_key", &self.master.as_ref().map(|_| "installed"))
            .finish()
    }
}

impl Vault {
    /// A vault on `pool` with the process's master key ([`install_master_key`]); without
    /// one it can forget, but sealing and opening fail with [`VaultError::NoMasterKey`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            master: MASTER_KEY.get().cloned().map(Arc::new),
        }
    }

    /// A vault on `pool` with `master` instead of the process's key.
    pub fn with_key(pool: PgPool, master: MasterKey) -> Self {
        Self {
            pool,
            master: Some(Arc::new(master)),
        }
    }

    fn master(&self) -> Result<&MasterKey, VaultError> {
        self.master.as_deref().ok_or(VaultError::NoMasterKey)
    }

    /// The stored payload of `event` (tagged, as cqrs-es stores it): an `OrderPlaced` has its
    /// e-mail and shipping address sealed under the customer's data key (made on first use);
    /// other events are stored as they are.
    ///
    /// # Errors
    /// [`VaultError::NoMasterKey`], a database error, or a failed encryption.
    pub async fn seal(&self, event: &OrderEvent) -> Result<Value, VaultError> {
        let mut stored =
            serde_json::to_value(event).map_err(|e| VaultError::Seal(e.to_string()))?;
        let OrderEvent::OrderPlaced {
            order_id,
            customer_id,
            ..
        } = event
        else {
            return Ok(stored);
        };
        let master = self.master()?;
        let (key_id, cipher) = self.data_key_of(master, customer_id).await?;
        let Some(body) = stored.get_mut("OrderPlaced").and_then(Value::as_object_mut) else {
            return Err(VaultError::Seal("OrderPlaced has no body".into()));
        };
        let personal = json!({
            "customer_email": body.remove("customer_email").unwrap_or(Value::Null),
            "shipping_address": body.remove("shipping_address").unwrap_or(Value::Null),
        });
        let plain = Zeroizing::new(personal.to_string().into_bytes());
        let sealed = encrypt(&cipher, order_id.as_bytes(), &plain)?;
        body.insert(
            SEALED_FIELD.into(),
            json!({"key_id": key_id, "sealed": hex::encode(sealed)}),
        );
        Ok(stored)
    }

    /// The customer's data key, made and stored (wrapped) when they have none.
    async fn data_key_of(
        &self,
        master: &MasterKey,
        customer_id: &str,
    ) -> Result<(Uuid, Aes256Gcm), VaultError> {
        for _ in 0..3 {
            let existing: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
                "SELECT key_id, wrapped_key FROM customer_keys WHERE customer_id = $1",
            )
            .bind(customer_id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some((key_id, wrapped)) = existing {
                return Ok((key_id, master.unwrap_key(key_id, &wrapped)?));
            }
            let key_id = Uuid::new_v4();
            let data_key = Aes256Gcm::generate_key(OsRng);
            let wrapped = master.wrap(key_id, &data_key)?;
            let inserted = sqlx::query(
                "INSERT INTO customer_keys (key_id, customer_id, wrapped_key) VALUES ($1, $2, $3)
                 ON CONFLICT (customer_id) DO NOTHING",
            )
            .bind(key_id)
            .bind(customer_id)
            .bind(&wrapped)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok((key_id, Aes256Gcm::new(&data_key)));
            }
            // A concurrent placement made the key first: read theirs.
        }
        Err(VaultError::Seal(
            "the customer's data key could not be made".into(),
        ))
    }

    /// Opens the sealed personal fields of every `OrderPlaced` among `envelopes`, in place
    /// (one read of the keys for all): the plain e-mail and address, or [`ERASED`] when the
    /// customer's key is gone. Other events, and plaintext ones, are left as they are.
    ///
    /// # Errors
    /// [`VaultError::NoMasterKey`], [`VaultError::WrongMasterKey`] or a database error; a
    /// missing key is not an error.
    pub async fn open_all(&self, envelopes: &mut [EventEnvelope]) -> Result<(), VaultError> {
        self.open(envelopes.iter_mut()).await
    }

    /// [`Vault::open_all`] over envelopes from anywhere (say, the logs of several orders),
    /// with one read of the keys for all.
    ///
    /// # Errors
    /// As [`Vault::open_all`].
    pub async fn open<'a>(
        &self,
        envelopes: impl IntoIterator<Item = &'a mut EventEnvelope>,
    ) -> Result<(), VaultError> {
        let mut envelopes: Vec<&'a mut EventEnvelope> = envelopes
            .into_iter()
            .filter(|e| sealed_key_id(e).is_some())
            .collect();
        let mut key_ids: Vec<Uuid> = envelopes.iter().filter_map(|e| sealed_key_id(e)).collect();
        if key_ids.is_empty() {
            return Ok(());
        }
        key_ids.sort_unstable();
        key_ids.dedup();
        let master = self.master()?;
        let rows: Vec<(Uuid, Vec<u8>)> =
            sqlx::query_as("SELECT key_id, wrapped_key FROM customer_keys WHERE key_id = ANY($1)")
                .persistent(false)
                .bind(&key_ids)
                .fetch_all(&self.pool)
                .await?;
        let mut keys: HashMap<Uuid, Aes256Gcm> = HashMap::with_capacity(rows.len());
        for (key_id, wrapped) in rows {
            keys.insert(key_id, master.unwrap_key(key_id, &wrapped)?);
        }
        for envelope in envelopes.iter_mut() {
            let Some(key_id) = sealed_key_id(envelope) else {
                continue;
            };
            let opened = keys.get(&key_id).and_then(|cipher| {
                let sealed = envelope.payload[SEALED_FIELD]["sealed"].as_str()?;
                let sealed = hex::decode(sealed).ok()?;
                let plain = Zeroizing::new(decrypt(cipher, envelope.order_id.as_bytes(), &sealed)?);
                serde_json::from_slice::<Value>(&plain).ok()
            });
            if opened.is_none() && keys.contains_key(&key_id) {
                tracing::warn!(order_id = %envelope.order_id, "sealed personal data does not open; shown as erased");
            }
            if let Some(body) = envelope.payload.as_object_mut() {
                body.remove(SEALED_FIELD);
                let (email, address) = match opened {
                    Some(mut personal) => (
                        personal["customer_email"].take(),
                        personal["shipping_address"].take(),
                    ),
                    None => erased_fields(),
                };
                body.insert("customer_email".into(), email);
                body.insert("shipping_address".into(), address);
            }
        }
        Ok(())
    }

    /// Forgets `customer_id` in one transaction: deletes their data keys (every sealed copy
    /// of their personal data becomes unreadable), rewrites the personal fields of their
    /// plaintext events (stored before sealing) to [`ERASED`], erases the recipient of their
    /// notifications and the request bodies kept for their idempotency keys, and records the
    /// `CustomerForgotten` fact. Forgetting again is harmless, and says so
    /// ([`Forgotten::forgotten_before`], [`Forgotten::erased_now`], [`Forgotten::detail`]).
    ///
    /// # Errors
    /// The database error; nothing is changed then.
    pub async fn forget(&self, customer_id: &str) -> Result<Forgotten, VaultError> {
        let mut tx = self.pool.begin().await?;
        let forgotten_before: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
            "SELECT min(forgotten_at) FROM forgotten_customers WHERE customer_id = $1",
        )
        .bind(customer_id)
        .fetch_one(&mut *tx)
        .await?;
        let deleted: Vec<Uuid> =
            sqlx::query_scalar("DELETE FROM customer_keys WHERE customer_id = $1 RETURNING key_id")
                .bind(customer_id)
                .fetch_all(&mut *tx)
                .await?;
        let keys_deleted = u64::try_from(deleted.len()).unwrap_or(u64::MAX);
        let placed: Vec<(String, i64, Value)> = sqlx::query_as(
            "SELECT aggregate_id, sequence, payload FROM events
              WHERE event_type = 'OrderPlaced'
                AND payload -> 'OrderPlaced' ->> 'customer_id' = $1",
        )
        .bind(customer_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut order_ids = Vec::with_capacity(placed.len());
        let mut erased_now = 0u64;
        for (aggregate_id, sequence, mut payload) in placed {
            if let Ok(id) = Uuid::parse_str(&aggregate_id) {
                order_ids.push(id);
            }
            let Some(body) = payload
                .get_mut("OrderPlaced")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            if let Some(sealed) = body.get(SEALED_FIELD) {
                let key_id = sealed
                    .get("key_id")
                    .and_then(Value::as_str)
                    .and_then(|id| Uuid::parse_str(id).ok());
                if key_id.is_some_and(|id| deleted.contains(&id)) {
                    erased_now += 1;
                }
                continue;
            }
            if body.get("customer_email").and_then(Value::as_str) == Some(ERASED) {
                continue;
            }
            let (email, address) = erased_fields();
            body.insert("customer_email".into(), email);
            body.insert("shipping_address".into(), address);
            sqlx::query(
                "UPDATE events SET payload = $3
                  WHERE aggregate_id = $1 AND sequence = $2 AND event_type = 'OrderPlaced'",
            )
            .bind(&aggregate_id)
            .bind(sequence)
            .bind(&payload)
            .execute(&mut *tx)
            .await?;
            erased_now += 1;
        }
        sqlx::query(
            "UPDATE notifications
                SET recipient = $2, last_error = CASE WHEN last_error IS NULL THEN NULL ELSE $2 END
              WHERE order_id = ANY($1)",
        )
        .bind(&order_ids)
        .bind(ERASED)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE idempotency_keys SET request_body = jsonb_build_object('erased', true)
              WHERE order_id = ANY($1)",
        )
        .bind(&order_ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE shipments SET last_error = $2 WHERE order_id = ANY($1) AND last_error IS NOT NULL",
        )
        .bind(&order_ids)
        .bind(ERASED)
        .execute(&mut *tx)
        .await?;
        let orders = u64::try_from(order_ids.len()).unwrap_or(u64::MAX);
        sqlx::query(
            "INSERT INTO forgotten_customers (customer_id, keys_deleted, orders)
             VALUES ($1, $2, $3)",
        )
        .bind(customer_id)
        .bind(i32::try_from(keys_deleted).unwrap_or(i32::MAX))
        .bind(i32::try_from(orders).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(keys_deleted, orders, erased_now, "customer forgotten");
        let mut forgotten = Forgotten {
            customer_id: customer_id.to_string(),
            keys_deleted,
            orders,
            erased_now,
            forgotten_before,
            detail: String::new(),
        };
        forgotten.detail = forgotten.describe();
        Ok(forgotten)
    }

    /// Re-wraps every data key under `new` (the vault's key must be the current one), in one
    /// transaction; returns how many keys were re-wrapped. Sealed events are untouched: only
    /// the data keys are encrypted under the master key.
    ///
    /// # Errors
    /// [`VaultError::WrongMasterKey`] when a key does not unwrap with the current key (nothing
    /// is changed then), or a database error.
    pub async fn rotate_master(&self, new: &MasterKey) -> Result<u64, VaultError> {
        let master = self.master()?;
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Uuid, Vec<u8>)> =
            sqlx::query_as("SELECT key_id, wrapped_key FROM customer_keys FOR UPDATE")
                .fetch_all(&mut *tx)
                .await?;
        let mut rewrapped = 0;
        for (key_id, wrapped) in rows {
            let data_key = Zeroizing::new(
                decrypt(&master.cipher(), key_id.as_bytes(), &wrapped)
                    .ok_or(VaultError::WrongMasterKey(key_id))?,
            );
            sqlx::query("UPDATE customer_keys SET wrapped_key = $2 WHERE key_id = $1")
                .bind(key_id)
                .bind(new.wrap(key_id, &data_key)?)
                .execute(&mut *tx)
                .await?;
            rewrapped += 1;
        }
        tx.commit().await?;
        Ok(rewrapped)
    }
}

/// The data key id of a sealed `OrderPlaced` envelope.
fn sealed_key_id(envelope: &EventEnvelope) -> Option<Uuid> {
    if envelope.event_type != "OrderPlaced" {
        return None;
    }
    envelope.payload.get(SEALED_FIELD)?["key_id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// The e-mail address and shipping address as shown once erased.
pub fn erased_fields() -> (Value, Value) {
    (
        json!(ERASED),
        json!({
            "name": ERASED,
            "line1": ERASED,
            "city": ERASED,
            "postal_code": ERASED,
            "country": ERASED,
        }),
    )
}

/// Whether an e-mail address is the erased marker (its customer was forgotten).
pub fn is_erased(email: &str) -> bool {
    email == ERASED
}

/// Whether a shipping address is erased (its customer was forgotten).
pub fn is_erased_address(address: &orderflow_domain::ShippingAddress) -> bool {
    address.line1 == ERASED
}

/// A body with its sealed fields shown as erased: what a reader that did not open it sees.
pub(crate) fn without_sealed(body: &Value) -> Option<Value> {
    let mut body = body.clone();
    let map = body.as_object_mut()?;
    map.remove(SEALED_FIELD)?;
    let (email, address) = erased_fields();
    map.insert("customer_email".into(), email);
    map.insert("shipping_address".into(), address);
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_keys_parse_and_never_show() {
        let key = MasterKey::generate();
        let hex = key.to_hex();
        let back = MasterKey::from_hex(&hex).unwrap();
        assert_eq!(*back.0, *key.0);
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
        assert!(MasterKey::from_hex("abcd").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn wrapped_keys_open_only_with_their_master_and_id() {
        let master = MasterKey::generate();
        let id = Uuid::new_v4();
        let wrapped = master.wrap(id, &[7u8; 32]).unwrap();
        assert!(master.unwrap_key(id, &wrapped).is_ok());
        assert!(master.unwrap_key(Uuid::new_v4(), &wrapped).is_err());
        assert!(MasterKey::generate().unwrap_key(id, &wrapped).is_err());
    }

    #[test]
    fn an_unopened_body_reads_as_erased() {
        let body = json!({"customer_id": "c", SEALED_FIELD: {"key_id": "x", "sealed": "00"}});
        let shown = without_sealed(&body).unwrap();
        assert_eq!(shown["customer_email"], ERASED);
        assert_eq!(shown["shipping_address"]["line1"], ERASED);
        assert!(shown.get(SEALED_FIELD).is_none());
        assert!(without_sealed(&json!({"customer_email": "a@b.c"})).is_none());
    }
}
