//! DCAP collateral: types, fetch from Intel PCS or a PCCS, on-disk cache. (in progress)
