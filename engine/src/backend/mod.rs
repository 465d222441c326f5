//! Audio backends: `offline` renders files through the engine (always built); `live` runs it
//! from a cpal device callback (feature `live`: ALSA); `jack` is the native JACK client
//! (feature `jack`): one client, audio and MIDI in one process callback.

#[cfg(feature = "jack")]
pub mod jack;
#[cfg(feature = "live")]
pub mod live;
pub mod offline;
pub mod paced;
