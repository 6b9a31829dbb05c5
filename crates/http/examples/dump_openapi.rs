//! Prints the OpenAPI document.
fn main() {
    println!(
        "{}",
        offline_access_http::openapi()
            .to_pretty_json()
            .unwrap_or_default()
    );
}
