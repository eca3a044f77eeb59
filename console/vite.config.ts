/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The Functions app serves dist/ at /api/console/ (functions/console.py); relative asset paths keep
// the bundle working under any base path. No CDN: everything is bundled from node_modules.
export default defineConfig({
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    chunkSizeWarningLimit: 600,
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts"],
  },
});
