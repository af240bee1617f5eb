// See package.json: cbor-x catches this and decodes in JavaScript.
throw new Error("cbor-extract stub: no native CBOR extractor")
