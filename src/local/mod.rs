//! Tools for trying and testing the pipeline on one machine, which the Lambda never uses: a
//! stand-in for the log API ([`simulator`]), realistic source records ([`synth`]) and the demo
//! that runs the whole job against both ([`demo`]), and what a store holds hour by hour ([`status`]).

pub mod demo;
pub mod simulator;
pub mod status;
pub mod synth;
