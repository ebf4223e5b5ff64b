//! Tools for trying and testing the pipeline on one machine, which the Lambda never uses: a
//! stand-in for the log API ([`simulator`]), realistic source records ([`synth`]) and the demo
//! that runs the whole job against both ([`demo`]).

pub mod demo;
pub mod simulator;
pub mod synth;
