package inference

import "encoding/base64"

// kvKey is the KV key of a sample: base64url of plate NUL id (KV keys allow only a small
// alphabet; base64url fits it).
func kvKey(plate, id string) string {
	return "s." + base64.RawURLEncoding.EncodeToString([]byte(plate+"\x00"+id))
}

// plateKey is the KV key of a plate.
func plateKey(plate string) string { return "p." + base64.RawURLEncoding.EncodeToString([]byte(plate)) }
