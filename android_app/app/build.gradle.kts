plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// The TFLite runtime the harness times. Pinned: a phone's figures are comparable only between runs
// of the same runtime. Keep it equal to tflite.version in pom.xml, which compile-checks these sources.
val tfliteVersion = "2.16.1"

android {
    namespace = "org.dapter.bench"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.dapter.bench"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        ndk {
            // The SoCs of the paper's phones (Snapdragon, Kirin, Helio) are 64-bit Arm.
            abiFilters += listOf("arm64-v8a", "armeabi-v7a")
        }
    }

    buildTypes {
        release {
            // No shrinking: TFLite's Java API is reached through JNI and reflection.
            isMinifyEnabled = false
            // Signed with the debug key so that `./gradlew assembleRelease` gives an APK that
            // `adb install` accepts without a keystore; sign with your own for distribution.
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    sourceSets["main"].java.srcDirs("src/main/kotlin")

    androidResources {
        // Models memory-mapped from assets must be stored uncompressed (TFLite's sample apps do the same).
        noCompress += "tflite"
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    implementation(project(":core"))
    implementation("org.tensorflow:tensorflow-lite:$tfliteVersion")
    implementation("org.tensorflow:tensorflow-lite-gpu:$tfliteVersion")
    implementation("org.tensorflow:tensorflow-lite-gpu-api:$tfliteVersion")
}
