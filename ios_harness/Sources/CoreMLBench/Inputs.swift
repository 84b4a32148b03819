import CoreML
import CoreVideo
import Foundation

/// A fixed, deterministic input for any model: every multi-array input is
/// filled with a smooth pattern in [-1, 1] (the manifest's input range),
/// every image input is a mid-grey buffer. Timing does not depend on values.
enum Inputs {
    static func make(for description: MLModelDescription) throws -> MLFeatureProvider {
        var features: [String: MLFeatureValue] = [:]
        for (name, feature) in description.inputDescriptionsByName {
            switch feature.type {
            case .multiArray:
                guard let constraint = feature.multiArrayConstraint else { throw BenchError.unsupportedInput(name) }
                let array = try MLMultiArray(shape: constraint.shape, dataType: constraint.dataType)
                for index in 0..<array.count {
                    array[index] = NSNumber(value: sin(Double(index) * 0.001))
                }
                features[name] = MLFeatureValue(multiArray: array)
            case .image:
                guard let constraint = feature.imageConstraint else { throw BenchError.unsupportedInput(name) }
                let buffer = try greyBuffer(constraint)
                features[name] = MLFeatureValue(pixelBuffer: buffer)
            default:
                throw BenchError.unsupportedInput("\(name) of type \(feature.type.rawValue)")
            }
        }
        return try MLDictionaryFeatureProvider(dictionary: features)
    }

    static func greyBuffer(_ constraint: MLImageConstraint) throws -> CVPixelBuffer {
        var buffer: CVPixelBuffer?
        let status = CVPixelBufferCreate(kCFAllocatorDefault, constraint.pixelsWide, constraint.pixelsHigh,
                                         constraint.pixelFormatType, nil, &buffer)
        guard status == kCVReturnSuccess, let pixels = buffer else {
            throw BenchError.unsupportedInput("cannot allocate a \(constraint.pixelsWide)x\(constraint.pixelsHigh) image")
        }
        CVPixelBufferLockBaseAddress(pixels, [])
        if let base = CVPixelBufferGetBaseAddress(pixels) {
            memset(base, 128, CVPixelBufferGetDataSize(pixels))
        }
        CVPixelBufferUnlockBaseAddress(pixels, [])
        return pixels
    }
}
