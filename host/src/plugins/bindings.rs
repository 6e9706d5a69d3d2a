//! Host-side bindings generated from `plugin-sdk/wit/plugin.wit` (world `full`). Individual
//! exported interfaces are looked up per plugin, so a component only needs the exports of the
//! hooks it is configured for.

wasmtime::component::bindgen!({
    world: "full",
    path: "../plugin-sdk/wit",
    imports: {
        // The only import that waits on I/O.
        "switchboard:plugin/http.fetch": async,
        default: trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq, Eq],
});
