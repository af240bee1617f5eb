package docsync

// Until is until for the external tests (package docsync_test).
var Until = until
