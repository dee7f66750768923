//! TDX quote parsing (v4, v5). (in progress)
