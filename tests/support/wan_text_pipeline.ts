// A tiny WanPipeline directory with its text encoder, assembled in a temporary directory from the committed
// fixtures (tests/fixtures/wan: the pipeline of tools/wan_pipeline_fixtures.py, saved without text
// components, and the UMT5 encoder and tokenizer of tools/umt5_fixtures.py, whose d_model is the
// transformer's text_dim), so that no fixture is stored twice.
import { copyTree } from "./temp.ts";

const FIXTURES = "tests/fixtures/wan";

/** Writes the directory as `dir`/`name`; returns its path. */
export async function wanTextPipeline(dir: string, name = "wan-text"): Promise<string> {
  const path = `${dir}/${name}`;
  for (const component of ["transformer", "vae", "scheduler"]) {
    await copyTree(`${FIXTURES}/pipeline/${component}`, `${path}/${component}`);
  }
  await copyTree(`${FIXTURES}/umt5-a`, `${path}/text_encoder`);
  await copyTree(`${FIXTURES}/umt5-tokenizer`, `${path}/tokenizer`);
  const index = JSON.parse(await Deno.readTextFile(`${FIXTURES}/pipeline/model_index.json`));
  index.text_encoder = ["transformers", "UMT5EncoderModel"];
  index.tokenizer = ["transformers", "T5TokenizerFast"];
  await Deno.writeTextFile(`${path}/model_index.json`, JSON.stringify(index, null, 2));
  return path;
}
