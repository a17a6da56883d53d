//! Fakes for the secrets ports: values by id or bucket/key, and scripted failures
//! (throttling, access denied) that moto cannot produce on demand.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::secrets::{FetchError, ObjectStore, SecretSource, SecretText};

/// A `SecretSource` with fixed values; ids may fail a number of times first.
#[derive(Default)]
pub struct FakeSecrets {
    values: HashMap<String, String>,
    failures: Mutex<HashMap<String, (u32, FetchError)>>,
    calls: Mutex<HashMap<String, u32>>,
}

impl FakeSecrets {
    pub fn with(mut self, id: &str, value: &str) -> Self {
        self.values.insert(id.to_owned(), value.to_owned());
        self
    }

    /// Fail the first `times` calls for `id` with `error`.
    pub fn failing_first(self, id: &str, times: u32, error: FetchError) -> Self {
        self.failures
            .lock()
            .expect("lock")
            .insert(id.to_owned(), (times, error));
        self
    }

    pub fn calls(&self, id: &str) -> u32 {
        self.calls
            .lock()
            .expect("lock")
            .get(id)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl SecretSource for FakeSecrets {
    async fn get_secret_string(&self, id: &str) -> Result<SecretText, FetchError> {
        *self
            .calls
            .lock()
            .expect("lock")
            .entry(id.to_owned())
            .or_default() += 1;
        if let Some((left, err)) = self.failures.lock().expect("lock").get_mut(id) {
            if *left > 0 {
                *left -= 1;
                return Err(err.clone());
            }
        }
        self.values
            .get(id)
            .map(|v| SecretText::new(v.clone()))
            .ok_or_else(|| FetchError::NotFound("ResourceNotFoundException".into()))
    }
}

/// An `ObjectStore` with fixed objects.
#[derive(Default)]
pub struct FakeStore {
    objects: HashMap<(String, String), String>,
}

impl FakeStore {
    pub fn with(mut self, bucket: &str, key: &str, body: &str) -> Self {
        self.objects
            .insert((bucket.to_owned(), key.to_owned()), body.to_owned());
        self
    }
}

#[async_trait]
impl ObjectStore for FakeStore {
    async fn get_object(&self, bucket: &str, key: &str) -> Result<SecretText, FetchError> {
        self.objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|v| SecretText::new(v.clone()))
            .ok_or_else(|| FetchError::NotFound("NoSuchKey".into()))
    }
}
