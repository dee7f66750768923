//! Reading quotes and other binary inputs from files: raw, hex or base64, size-capped. (in progress)
