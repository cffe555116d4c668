// Build-time stand-in for "three/webgpu" (see build.mjs). three-render-objects imports
// WebGPURenderer but only uses it when a graph is created with the WebGPU option, which this
// page never sets; bundling the real module would add about 1 MB of unused code.
export class WebGPURenderer {
  constructor() {
    throw new Error("WebGPU rendering is not bundled in the chorus run viewer");
  }
}
