//! RFC 8785 canonical JSON, the input of every hash over JSON. (in progress)
