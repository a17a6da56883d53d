//! Fakes for the secrets ports: values by id or bucket/key, scripted failures
//! (throttling, access denied) that moto cannot produce on demand, and a missing
//! default region.

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
    no_region: bool,
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

    /// No default region: only ARNs can be read (the fake still answers any id).
    pub fn without_region(mut self) -> Self {
        self.no_region = true;
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

    /// Calls over all ids.
    pub fn total_calls(&self) -> u32 {
        self.calls.lock().expect("lock").values().sum()
    }
}

#[async_trait]
impl SecretSource for FakeSecrets {
    fn has_region(&self) -> bool {
        !self.no_region
    }

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

/// An `ObjectStore` with fixed objects; an object may always fail instead.
#[derive(Default)]
pub struct FakeStore {
    objects: HashMap<(String, String), String>,
    failures: HashMap<(String, String), FetchError>,
    calls: Mutex<u32>,
    no_region: bool,
}

impl FakeStore {
    pub fn with(mut self, bucket: &str, key: &str, body: &str) -> Self {
        self.objects
            .insert((bucket.to_owned(), key.to_owned()), body.to_owned());
        self
    }

    /// Every read of `bucket`/`key` fails with `error`.
    pub fn failing(mut self, bucket: &str, key: &str, error: FetchError) -> Self {
        self.failures
            .insert((bucket.to_owned(), key.to_owned()), error);
        self
    }

    /// No region: no object can be read.
    pub fn without_region(mut self) -> Self {
        self.no_region = true;
        self
    }

    pub fn calls(&self) -> u32 {
        *self.calls.lock().expect("lock")
    }
}

#[async_trait]
impl ObjectStore for FakeStore {
    fn has_region(&self) -> bool {
        !self.no_region
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<SecretText, FetchError> {
        *self.calls.lock().expect("lock") += 1;
        let id = (bucket.to_owned(), key.to_owned());
        if let Some(err) = self.failures.get(&id) {
            return Err(err.clone());
        }
        self.objects
            .get(&id)
            .map(|v| SecretText::new(v.clone()))
            .ok_or_else(|| FetchError::NotFound("NoSuchKey".into()))
    }
}
