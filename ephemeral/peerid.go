package ephemeral

// String renders the peer ID as libp2p prints it: base58btc of the ID's
// bytes (for an Ed25519 key, "12D3KooW..."), without importing libp2p. Any
// byte string renders; one that is not a valid libp2p peer ID renders as
// the base58 of its bytes all the same.
func (p PeerID) String() string { return base58(string(p)) }

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// base58 encodes b in the Bitcoin base58 alphabet (leading zero bytes
// become '1's), as multibase base58btc without its prefix.
func base58(b string) string {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	// log(256)/log(58) ≈ 1.37: enough digits for the rest.
	digits := make([]byte, 0, (len(b)-zeros)*138/100+1)
	for i := zeros; i < len(b); i++ {
		carry := int(b[i])
		for j := range digits {
			carry += int(digits[j]) << 8
			digits[j] = byte(carry % 58)
			carry /= 58
		}
		for carry > 0 {
			digits = append(digits, byte(carry%58))
			carry /= 58
		}
	}
	out := make([]byte, zeros+len(digits))
	for i := range zeros {
		out[i] = '1'
	}
	for i, d := range digits {
		out[len(out)-1-i] = base58Alphabet[d]
	}
	return string(out)
}
