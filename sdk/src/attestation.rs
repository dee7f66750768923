//! The attestation document (`attestation.json`) and the REPORTDATA binding. (in progress)
