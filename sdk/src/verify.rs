//! DCAP verification under an explicit policy. (in progress)
