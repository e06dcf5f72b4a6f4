//! The only place generated bindings live in the SDK. Nothing here is part of
//! the SDK's public API; the export macros reach it through `__private`.

wit_bindgen::generate!({
    world: "guest",
    path: "../../wit",
    pub_export_macro: true,
    export_macro_name: "__export_guest",
    default_bindings_module: "::dohost_sdk::__private::bindings",
    runtime_path: "::dohost_sdk::__private::wit_bindgen::rt",
});
