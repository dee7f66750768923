//! The RTMR3 runtime event log. (in progress)
