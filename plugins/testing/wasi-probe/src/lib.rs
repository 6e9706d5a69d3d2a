//! Imports WASI p2 (environment, preopened directories, randomness, TCP, wall clock) and
//! answers `authenticate` with what it found, e.g. `env=0 args=0 preopens=0 random=8
//! tcp=denied clock=ok`. The host's tests check that WASI components load with nothing
//! granted. Written directly against wit-bindgen, as a non-SDK component would be.
// Only meaningful as a component; native builds of the workspace (unit tests) skip it.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({
    world: "wasi-probe",
    path: "wit",
    generate_all,
});

use exports::switchboard::plugin::{authenticator, lifecycle};
use switchboard::plugin::types::{AuthRequest, Deny, Identity};
use wasi::sockets::network::IpAddressFamily;

struct WasiProbe;

impl lifecycle::Guest for WasiProbe {
    fn configure(_config_json: String) -> Result<(), String> {
        Ok(())
    }
}

impl authenticator::Guest for WasiProbe {
    fn authenticate(_req: AuthRequest) -> Result<Identity, Deny> {
        let env = wasi::cli::environment::get_environment().len();
        let args = wasi::cli::environment::get_arguments().len();
        let preopens = wasi::filesystem::preopens::get_directories().len();
        let random = wasi::random::random::get_random_bytes(8).len();
        let tcp = match wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
            Ok(_) => "allowed",
            Err(_) => "denied",
        };
        let clock = if wasi::clocks::wall_clock::now().seconds > 0 {
            "ok"
        } else {
            "zero"
        };
        Ok(Identity {
            subject: format!(
                "env={env} args={args} preopens={preopens} random={random} tcp={tcp} clock={clock}"
            ),
            attributes: Vec::new(),
            expires_at: None,
            recheck_every_secs: None,
        })
    }
}

export!(WasiProbe);
