// Package b2sedge registers the b2s-edge Caddy modules, so that the
// module's root is what Caddy users name when they build the plugin:
//
//	xcaddy build --with github.com/b2scom/b2s-edge
//
// The modules themselves are in the caddymodule package.
package b2sedge

import (
	_ "github.com/b2scom/b2s-edge/caddymodule"
)
