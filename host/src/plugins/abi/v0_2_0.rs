//! `switchboard:plugin@0.2.0` (`plugin-sdk/wit/v0.2.0/plugin.wit`), the newest interface.
//!
//! The host speaks these types everywhere (through [`super::latest`]): the host imports are
//! implemented for them in `imports.rs`, and older versions convert to and from them. New since
//! 0.1.0: `identity.attributes`, `auth-request.replacing`.

wasmtime::component::bindgen!({
    world: "full",
    path: "../plugin-sdk/wit/v0.2.0",
    imports: {
        // The only import that waits on I/O.
        "switchboard:plugin/http.fetch": async,
        default: trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq, Eq],
});
