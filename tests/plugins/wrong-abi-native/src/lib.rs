//! Exports a root module named like evolve's (`evolve_plugin`, same version) whose layout is
//! different: what a plugin built against a changed SDK looks like to the loader.

use abi_stable::library::RootModule;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::{declare_root_module_statics, export_root_module, package_version_strings, StableAbi};

/// Not evolve's root module.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// A field evolve does not have.
    pub answer: extern "C" fn() -> u32,
    /// Another.
    #[sabi(last_prefix_field)]
    pub twice: extern "C" fn(u64) -> u64,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "evolve_plugin";
    const NAME: &'static str = "evolve_plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}

extern "C" fn answer() -> u32 {
    42
}

extern "C" fn twice(x: u64) -> u64 {
    x * 2
}

#[export_root_module]
fn root() -> PluginModuleRef {
    PluginModule { answer, twice }.leak_into_prefix()
}
