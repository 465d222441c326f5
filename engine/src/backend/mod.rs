//! Audio backends: `offline` renders files through the engine (always built); `live` runs it
//! from a cpal device callback (feature `live`).

#[cfg(feature = "live")]
pub mod live;
pub mod offline;
pub mod paced;
