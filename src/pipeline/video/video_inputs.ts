// What a text-to-video model (Wan2.1's WanPipeline) takes beyond an image model: how many frames a video has
// by default and the frame rate it is played at (ModelCard.video; null for image models).

export interface VideoInputs {
  /** Frames per video; 4k+1 for Wan (its VAE packs 4 frames into each latent frame after the first). */
  frames: number;
  /** Frames per second the video is encoded at (Wan2.1 exports at 16). */
  fps: number;
}

/** A video model's card: its defaults and how its VAE packs frames. */
export interface VideoCard extends VideoInputs {
  /** Frames the VAE packs into each latent frame after the first (Wan2.1: 4); a video has k x this + 1. */
  framesPerLatent: number;
}
