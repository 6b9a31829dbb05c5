//! Shared by the examples: offline-access's use cases over your store (here the file store) and the Google adapter,
//! pointed at a fake Google.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use tempfile::TempDir;

use fake_google::FakeGoogle;
use offline_access_crypto::KeyRing;
use offline_access_domain::{OfflineAccess, Ports, Settings, SystemClock};
use offline_access_google::{ClientSecret, Google, GoogleConfig};
use offline_access_store_file::FileStore;

/// The use cases, as an application builds them: the Google adapter from the web client's secret file, a
/// credential store, the system clock.
///
/// Against real Google: `ClientSecret::from_file(path)?` and no `base_url`; the key ring from your secret store,
/// `KeyRing::parse("k1:BASE64-OF-32-BYTES")?` (the same value as `security.encryption_keys`).
pub(crate) fn offline_access(
    fake: &FakeGoogle,
    store_dir: &Path,
) -> Result<Arc<OfflineAccess>, Box<dyn Error>> {
    let secret = ClientSecret::from_json(&fake.client_secret_json().to_string())?;
    let mut config = GoogleConfig::from_client_secret(&secret);
    config.base_url = Some(fake.base_url());
    let google = Google::new(config)?;

    let keys = Arc::new(KeyRing::generate_ephemeral());
    let store = Arc::new(FileStore::open(store_dir.join("credentials"), keys)?);

    let ports = Ports {
        tokens: google.tokens(),
        verifier: google.verifier(),
        store,
        drive: google.drive(),
        clock: Arc::new(SystemClock),
    };
    let service = OfflineAccess::new(ports, Settings::default()).with_google_api(google.api());
    Ok(Arc::new(service))
}

/// A fake Google and the use cases over a file store in a temporary directory (all stopped and removed when
/// dropped).
pub(crate) struct World {
    /// The in-process fake Google.
    pub(crate) fake: FakeGoogle,
    /// The use cases, pointed at it.
    pub(crate) service: Arc<OfflineAccess>,
    /// Where the file store keeps the credentials.
    _store_dir: TempDir,
}

impl World {
    /// The use cases against `fake` (started with `FakeGoogle::start()`), over a file store in a new temporary
    /// directory.
    pub(crate) fn on(fake: FakeGoogle) -> Result<Self, Box<dyn Error>> {
        let store_dir = tempfile::tempdir()?;
        let service = offline_access(&fake, store_dir.path())?;
        Ok(Self {
            fake,
            service,
            _store_dir: store_dir,
        })
    }
}
