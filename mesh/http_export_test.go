package mesh

// EnforceHTTPListener applies a server Listener to one request as a mesh
// HTTP server does, for tests of Listener settings that meshlet's control
// plane does not send.
var EnforceHTTPListener = enforce
