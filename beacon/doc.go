// Package beacon holds the visitor-facing logic of b2s-edge that knows
// nothing of Caddy: the signed first-party cookie ID, the 1x1 pixel, the
// parsing of beacon query parameters and the record that describes each
// request, with its JSON encoding.
//
// Everything here is on the request path, so it avoids allocation where
// it can and treats every input as hostile: bad input is bounded,
// replaced or ignored, never an error that could break a response.
package beacon
