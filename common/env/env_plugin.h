/* env_plugin.h - the ABI of user environments loaded from shared objects.
 *
 * A plugin is a shared object exporting one C function named ENV_PLUGIN_SYMBOL:
 *
 *     const env_plugin *twig_env_plugin_register(const char *name);
 *
 * It returns the plugin's descriptor for the env called `name` (NULL if it has none).
 * env_make(&e, "plugin:/path/libmyenv.so:Name") dlopens the library, calls the function
 * with "Name", checks abi_version and struct_size before touching anything else, then calls
 * create() on a zeroed env_t exactly as for a built-in task (see env.h: create fills ops,
 * spec and impl; the vtable's destroy releases impl). The spec the plugin declares is
 * validated (dims, bounds, limits); a bad one is refused with an error, never trusted.
 *
 * The ABI covers the layouts of env_plugin, env_t, env_spec, env_ops and env_step_result.
 * Any change to one of them bumps ENV_PLUGIN_ABI_VERSION, and a plugin built against
 * another version is refused with TWIG_EVERSION. Plugins should depend only on libc/libm
 * (twig's own symbols are not exported to them) and on this header and env.h.
 * An example lives in tests/plugins/example_env.c.
 */
#ifndef TWIG_ENV_PLUGIN_H
#define TWIG_ENV_PLUGIN_H

#include <stdint.h>

#include "common/env/env.h"

#define ENV_PLUGIN_ABI_VERSION 1u
#define ENV_PLUGIN_SYMBOL "twig_env_plugin_register"
#define ENV_PLUGIN_PREFIX "plugin:"

typedef struct env_plugin {
    uint32_t abi_version;      /* ENV_PLUGIN_ABI_VERSION the plugin was built with; first */
    uint32_t struct_size;      /* sizeof(env_plugin) as the plugin saw it */
    env_create_fn create;      /* fills a zeroed env_t: ops, spec, impl */
} env_plugin;

typedef const env_plugin *(*env_plugin_register_fn)(const char *name);

#endif
