// Command caddy is Caddy with its standard modules and the b2s-edge plugin:
// the binary that xcaddy would build with --with github.com/b2scom/b2s-edge.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/b2scom/b2s-edge/caddymodule"
)

func main() {
	caddycmd.Main()
}
